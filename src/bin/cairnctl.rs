//! `cairnctl`: the command-line client for Cairn, and for any etcd v3 endpoint.

use std::io::Write;
use std::process::ExitCode;

use cairn::ctl::{run, Cli};
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Two workers: the load generator drives many concurrent clients.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("Error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(printed) => {
            // A closed pipe (e.g. `| head`) is not an error worth reporting.
            let _ = std::io::stdout().write_all(printed.stdout.as_bytes());
            let _ = std::io::stderr().write_all(printed.stderr.as_bytes());
            ExitCode::SUCCESS
        }
        Err(cairn::ctl::CtlError::Verdict(printed)) => {
            let _ = std::io::stdout().write_all(printed.stdout.as_bytes());
            let _ = std::io::stderr().write_all(printed.stderr.as_bytes());
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("Error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
