//! `rill-load`: see the crate documentation and `rill-load --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let command = match rill_loadtest::cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("rill-load: {err}\n\n{}", rill_loadtest::cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rill-load: tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            rill_loadtest::cli::Command::Help => {
                println!("{}", rill_loadtest::cli::USAGE);
                Ok(())
            }
            rill_loadtest::cli::Command::Run(args) => rill_loadtest::coordinator::run(args).await,
            rill_loadtest::cli::Command::Faults(args) => rill_loadtest::faults::run(*args).await,
            rill_loadtest::cli::Command::Hostile(args) => rill_loadtest::hostile::run(*args).await,
            rill_loadtest::cli::Command::Worker => rill_loadtest::worker::run().await,
        }
    });
    // Worker tasks may still hold sockets: do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rill-load: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
