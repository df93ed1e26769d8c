//! The `envclone` binary: parse the command line, run it until done or Ctrl-C, exit with the
//! code `app` chose. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match envclone::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors are bad input (2); --help and --version are not errors.
            return if e.use_stderr() {
                ExitCode::from(envclone::app::EXIT_BAD_INPUT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    runtime.block_on(envclone::app::run(cli, async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("envclone: interrupted; returning the source to service before exiting");
    }))
}
