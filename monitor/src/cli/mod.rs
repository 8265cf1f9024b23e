//! The `tollgate` command line: its arguments (`args`), the subcommands
//! that talk to the daemon (`client`, printing typed replies with
//! `print`; `watch`, the live view), those that do not (`local`), and
//! its own documentation (`docs`: completions and man pages).

pub mod args;
mod client;
mod docs;
mod local;
mod print;
mod watch;

use std::process::ExitCode;

use clap::Parser as _;

pub use args::Cli;
use args::Command;

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // A command whose output goes into a pipe that closes early (`|
        // head`, `| true`) ends quietly, as other Unix tools do, instead
        // of panicking on EPIPE. The daemon keeps ignoring SIGPIPE: a
        // closed socket must not stop it.
        // SAFETY: setting a signal's disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Run(args) => return local::run_cmd(args),
        Command::CheckConfig {
            file,
            no_interfaces,
        } => return local::check_config(&file, no_interfaces),
        Command::Replay(args) => {
            local::init_logs(crate::config::LogFormat::Text);
            local::replay_cmd(&args)
        }
        Command::Status(c) => client::status(&c),
        Command::Top {
            n,
            by,
            watch: true,
            every,
            count,
            client: c,
        } => watch::watch(
            &c,
            watch::Options {
                n,
                sort: by.into(),
                every: every.max(std::time::Duration::from_millis(200)),
                count,
            },
        ),
        Command::Top {
            n, by, client: c, ..
        } => client::top(&c, n, by),
        Command::Rules { op } => client::rules(op),
        Command::Limit { op } => client::limit(op),
        Command::Ban { op } => client::ban(op),
        Command::Reload(c) => client::reload(&c),
        Command::Explain { addr, client: c } => client::explain(&c, addr),
        Command::Detect { op } => client::detect(op),
        Command::Events { follow, client: c } => client::events(&c, follow),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out_dir } => docs::man(out_dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
