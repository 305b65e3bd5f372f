use anyhow::Context as _;
use rill_runtime::telemetry::Telemetry;
use rill_sequencer::SequencerSettings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: SequencerSettings = rill_runtime::settings::load()?;
    let telemetry = Telemetry::init("rill-sequencer", &settings.telemetry)?;
    let shutdown = rill_runtime::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (setting `listen`)", settings.listen))?;
    let outcome = rill_sequencer::run(settings, listener, shutdown).await;
    telemetry.shutdown();
    Ok(outcome?)
}
