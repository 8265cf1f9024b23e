//! The CLI's documentation, generated from its clap definitions so it
//! never drifts from the code: shell completion scripts and manual pages
//! (section 8: `tollgate` administers the host). The package installs
//! both (packaging/build-deb.sh).

use std::{io::Write, path::Path};

use clap::{Command, CommandFactory as _};

use super::args::Cli;

/// Section 8: system administration commands.
const SECTION: &str = "8";

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "tollgate", &mut std::io::stdout());
    Ok(())
}

/// Prints `tollgate.8`, or with `out_dir` writes it and one page per
/// subcommand (`tollgate-ban-add.8`, as git names its pages) there.
pub fn man(out_dir: Option<&Path>) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    // Builds every subcommand's usage line with its full name.
    cmd.build();
    let Some(dir) = out_dir else {
        return page(&cmd, "tollgate", &mut std::io::stdout().lock());
    };
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    write_pages(&cmd, "tollgate", dir)
}

fn write_pages(cmd: &Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.{SECTION}"));
    let mut f = std::fs::File::create(&path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    page(cmd, name, &mut f)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

fn page(cmd: &Command, name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let cmd = cmd.clone().display_name(name.to_owned());
    clap_mangen::Man::new(cmd)
        .section(SECTION)
        .manual("Tollgate")
        .source(concat!("tollgate ", env!("CARGO_PKG_VERSION")))
        .render(out)?;
    Ok(())
}
