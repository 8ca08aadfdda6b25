//! `gateway` binary: configuration from the environment, then
//! [`gateway::build`] until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOCATOR: platform::Allocator = platform::Allocator;

fn main() -> std::process::ExitCode {
    let config = match platform::runtime::load_config("gateway") {
        Ok(config) => config,
        Err(code) => return code,
    };
    platform::runtime::run_main("gateway", &config, |config| async move {
        let running = gateway::build(config).await?;
        tracing::info!(addr = %running.addr(), "gateway listening");
        tokio::select! {
            () = platform::runtime::shutdown_signal() => {}
            () = running.cancelled() => tracing::warn!("the HTTP server stopped"),
        }
        running.shutdown().await;
        Ok(())
    })
}
