use anyhow::Context as _;
use rill_api::ApiSettings;
use rill_runtime::telemetry::Telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: ApiSettings = rill_runtime::settings::load()?;
    let telemetry = Telemetry::init("rill-api", &settings.telemetry)?;
    let shutdown = rill_runtime::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (setting `listen`)", settings.listen))?;
    rill_api::run(settings, listener, shutdown).await?;
    telemetry.shutdown();
    Ok(())
}
