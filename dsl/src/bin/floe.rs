//! The `floe` command line: one subcommand per task (`floe tail` so far; submit, list,
//! status, cancel, savepoint, stop, resume and rescale are to come).
//!
//! Exit codes: 0 when the command did what it was asked (including being stopped with
//! Ctrl-C, or its output being closed by a reader like `head`), 2 for a usage error
//! (printed by clap with the flag at fault), 1 for a runtime error, printed as one line
//! `floe <command>: <what went wrong and what to change>`.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use floe_dsl::tail::{self, TailArgs};

/// Floe's command line.
#[derive(Debug, Parser)]
#[command(name = "floe", version, about = "Floe's command line", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. A new one is a variant here (with its `Args` struct in the library, so
/// it can be tested) and an arm in `main`.
#[derive(Debug, Subcommand)]
enum Command {
    // Its help texts are those of `TailArgs` (a doc comment here would replace them).
    Tail(TailArgs),
}

impl Command {
    /// The subcommand's name, for error messages.
    fn name(&self) -> &'static str {
        match self {
            Command::Tail(_) => "tail",
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit with code 2, --help and --version with 0 (clap's defaults).
    let cli = Cli::parse();
    let name = cli.command.name();
    let result = match cli.command {
        Command::Tail(args) => run_tail(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(io::stderr(), "floe {name}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `floe tail`: records go to stdout, flushed per record on a terminal (Rust's stdout is
/// line-buffered) and in large writes otherwise (`run` flushes whenever it is caught up).
fn run_tail(args: &TailArgs) -> Result<(), String> {
    let stdout = io::stdout();
    let ended = if stdout.is_terminal() {
        tail::run(args, &mut stdout.lock())
    } else {
        tail::run(args, &mut BufWriter::with_capacity(64 * 1024, stdout.lock()))
    };
    ended.map(|_| ()).map_err(|e| e.to_string())
}
