use anyhow::Context as _;
use rill_persist::PersistSettings;
use rill_runtime::telemetry::Telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: PersistSettings = rill_runtime::settings::load()?;
    let telemetry = Telemetry::init("rill-persist", &settings.telemetry)?;
    let shutdown = rill_runtime::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (setting `listen`)", settings.listen))?;
    rill_persist::run(settings, listener, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
