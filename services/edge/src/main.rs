use anyhow::Context as _;
use rill_edge::{Edge, EdgeSettings};
use rill_runtime::telemetry::Telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: EdgeSettings = rill_runtime::settings::load()?;
    let telemetry = Telemetry::init("rill-edge", &settings.telemetry)?;
    let shutdown = rill_runtime::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {} (setting `listen`)", settings.listen))?;
    let edge = Edge::start(settings, shutdown).await?;
    edge.serve(listener).await;
    telemetry.shutdown();
    Ok(())
}
