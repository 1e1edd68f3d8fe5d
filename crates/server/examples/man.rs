//! Writes memcrab's man page, `memcrab.1`, from the flag definitions the
//! binary parses (`config::Args`, `config::SUBOPTIONS`), so the two cannot
//! drift: `cargo run -p memcrab-server --example man > packaging/memcrab.1`,
//! then `man -l packaging/memcrab.1`. The committed page is checked
//! against this output by `tests/packaging.rs`.

use std::io::Write;

use clap::CommandFactory;
use memcrab_server::config::{Args, SUBOPTIONS};

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn roff(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn main() -> std::io::Result<()> {
    let page = render()?;
    std::io::stdout().lock().write_all(&page)
}

/// The page, in roff.
pub fn render() -> std::io::Result<Vec<u8>> {
    let cmd = Args::command()
        .about("a memcached 1.6 compatible cache server")
        .long_about(
            "memcrab serves memcached's text, meta and binary protocols (TCP, UDP, unix \
             sockets, TLS) with memcached 1.6's flags and stats. Flags marked REFUSED stop \
             the start with a message naming them. The -o suboptions are listed under \
             EXTENDED OPTIONS.",
        )
        .after_help("");
    let man = clap_mangen::Man::new(cmd);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    writeln!(out, ".SH \"EXTENDED OPTIONS\"")?;
    writeln!(
        out,
        "Given with \\fB\\-o\\fR as a comma separated list, several \\fB\\-o\\fR adding up."
    )?;
    for (name, desc) in SUBOPTIONS {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(name), roff(desc))?;
    }
    writeln!(out, ".SH FILES")?;
    writeln!(
        out,
        "/etc/memcrab.conf: the flags the systemd unit starts memcrab with, one per line \
         (read by /usr/share/memcrab/memcrab\\-start)."
    )?;
    man.render_version_section(&mut out)?;
    Ok(out)
}
