//! `lxc`: parse the command line, load the client configuration, dispatch, and report errors
//! as one `Error: ...` line with a non-zero exit status.

use clap::Parser;
use clap::error::ErrorKind;
use lxc_cli::cmd::{self, Cli};
use lxc_cli::config::Config;
use lxc_cli::parse::expand_alias;
use lxc_cli::{Ctx, Exit, Global};

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run());
    // Exit while the runtime is still alive: dropping it would wait for a blocked stdin reader.
    std::process::exit(code);
}

/// The message of a clap error in LXD's words, on one line.
fn clap_message(e: &clap::Error) -> String {
    use clap::error::ContextKind;
    let ctx = |k| e.get(k).map(|v| v.to_string()).unwrap_or_default();
    match e.kind() {
        ErrorKind::InvalidSubcommand => {
            format!(
                "unknown command \"{}\" for \"lxc\"",
                ctx(ContextKind::InvalidSubcommand)
            )
        }
        ErrorKind::UnknownArgument => format!("unknown flag: {}", ctx(ContextKind::InvalidArg)),
        ErrorKind::MissingRequiredArgument
        | ErrorKind::TooManyValues
        | ErrorKind::TooFewValues
        | ErrorKind::WrongNumberOfValues => "Invalid number of arguments".to_string(),
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_string()
        }
    }
}

async fn run() -> i32 {
    let dir = Config::default_dir();
    let loaded = match Config::load(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let first_run = loaded.is_none();
    let mut conf = loaded.unwrap_or_else(|| Config::default_in(&dir));
    conf.apply_env();

    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(expanded) = expand_alias(&conf.aliases, &args) {
        args = expanded;
    }
    let args_for_help = args.clone();
    let cli = match Cli::try_parse_from(std::iter::once("lxc".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                // LXD prints the help of a bare `lxc` or `lxc image` and succeeds.
                let _ = e.print();
                return 0;
            }
            ErrorKind::MissingRequiredArgument => {
                // LXD prints the command's help, and succeeds when no argument was given.
                let (help, positionals) = cmd::help_for(&args_for_help);
                print!("{help}");
                if positionals == 0 {
                    return 0;
                }
                eprintln!("Error: Invalid number of arguments");
                return 1;
            }
            _ => {
                eprintln!("Error: {}", clap_message(&e));
                return 1;
            }
        },
    };

    let global = Global {
        debug: cli.debug,
        verbose: cli.verbose,
        quiet: cli.quiet,
        project: cli.project.clone().unwrap_or_default(),
        force_local: cli.force_local,
    };
    let mut ctx = Ctx { conf, global };
    if first_run {
        lxc_cli::cmd::misc::first_run(&ctx, &cli.command).await;
    }
    match cmd::dispatch(&mut ctx, cli.command).await {
        Ok(()) => 0,
        Err(e) => {
            if e.downcast_ref::<lxc_cli::ShowHelp>().is_some() {
                print!("{}", cmd::help_for(&args_for_help).0);
                return 0;
            }
            if let Some(exit) = e.downcast_ref::<Exit>() {
                if let Some(m) = &exit.message {
                    eprintln!("Error: {m}");
                }
                return exit.code;
            }
            eprintln!("Error: {e:#}");
            1
        }
    }
}
