//! The `apf` binary: parse, set up output, run, map the result to an exit code.

use clap::Parser;

fn main() {
    let cli = apf::cli::Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => apf::printer::Level::Quiet,
        (false, 0) => apf::printer::Level::Normal,
        _ => apf::printer::Level::Verbose,
    };
    apf::printer::init(level, cli.color);
    init_tracing(cli.verbose, cli.quiet);

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            apf::printer::error(format!("could not start the async runtime: {e}"));
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(apf::commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            apf::printer::error(apf::secret::redact(&format!("{e:#}")));
            apf::commands::exit::ERROR
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "apf=debug,warn",
        _ => "apf=trace,debug",
    };
    let filter = EnvFilter::try_from_env("APF_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(apf::printer::get().color)
        .with_target(false)
        .try_init();
}
