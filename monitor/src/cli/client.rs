//! The subcommands that talk to the running daemon: each sends one
//! request and prints its typed reply, as text or (`--json`) as JSON.

use std::{io::Write as _, path::PathBuf, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    args::{BanOp, ClientArgs, DetectOp, LimitOp, RuleActionArg, RulesOp, SOCKET_ENV, TopBy},
    print::Text,
};
use crate::control::{
    Client, ClientError, Request,
    replies::{
        Banned, Bans, DetectState, Events, Explanation, LimitChanged, Reloaded, RuleChanged, Rules,
        Status, ThresholdChanged, Top, Unbanned,
    },
};

/// Connects to the socket `c` names; a failure says which socket was
/// tried, chosen how, and how to point elsewhere.
pub(super) fn connect(c: &ClientArgs) -> anyhow::Result<(Client, PathBuf)> {
    let (path, from) = c.socket()?;
    match Client::connect(&path) {
        Ok(conn) => Ok((conn, path)),
        Err(ClientError::Connect { source, .. }) => anyhow::bail!(
            "cannot connect to the daemon at {} ({from}): {source}; is `tollgate run` running, and may you use its socket (root, or the configured group)? To reach another daemon: --socket PATH, {SOCKET_ENV}=PATH, or --config FILE (its control.socket)",
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}

/// Sends `req` and prints the reply `R`.
fn call<R: DeserializeOwned + Serialize + Text>(
    c: &ClientArgs,
    req: Request,
) -> anyhow::Result<()> {
    let reply: R = connect(c)?.0.call(req)?;
    let mut out = std::io::stdout().lock();
    if c.json {
        writeln!(out, "{}", serde_json::to_string(&reply)?)?;
    } else {
        writeln!(out, "{}", reply.text())?;
    }
    Ok(())
}

pub fn status(c: &ClientArgs) -> anyhow::Result<()> {
    call::<Status>(c, Request::Status)
}

pub fn top(c: &ClientArgs, n: usize, by: TopBy) -> anyhow::Result<()> {
    let by = match by {
        TopBy::Packets => "packets",
        TopBy::Bytes => "bytes",
        TopBy::Drops => "drops",
    };
    call::<Top>(c, Request::Top { n, by: by.into() })
}

pub fn rules(op: RulesOp) -> anyhow::Result<()> {
    match op {
        RulesOp::List(c) => call::<Rules>(&c, Request::RulesList),
        RulesOp::Add {
            cidr,
            action,
            limit,
            monitor,
            comment,
            force,
            client,
        } => {
            let action = match action {
                RuleActionArg::Allow => "allow",
                RuleActionArg::Deny => "deny",
                RuleActionArg::Limit => "limit",
            };
            call::<RuleChanged>(
                &client,
                Request::RulesAdd {
                    cidr,
                    action: action.into(),
                    limit: limit.spec(),
                    monitor,
                    comment,
                    force,
                },
            )
        }
        RulesOp::Remove { cidr, client } => {
            call::<RuleChanged>(&client, Request::RulesRemove { cidr })
        }
    }
}

pub fn limit(op: LimitOp) -> anyhow::Result<()> {
    match op {
        LimitOp::Show(c) => call::<Rules>(&c, Request::LimitShow),
        LimitOp::Set {
            cidr,
            limit,
            monitor,
            client,
        } => call::<LimitChanged>(
            &client,
            Request::LimitSet {
                cidr,
                limit: limit.spec(),
                monitor,
            },
        ),
        LimitOp::Reset { cidr, client } => {
            call::<LimitChanged>(&client, Request::LimitReset { cidr })
        }
    }
}

pub fn ban(op: BanOp) -> anyhow::Result<()> {
    match op {
        BanOp::Add {
            cidr,
            ttl,
            reason,
            force,
            client,
        } => call::<Banned>(
            &client,
            Request::BanAdd {
                cidr,
                ttl,
                reason,
                force,
            },
        ),
        BanOp::List(c) => call::<Bans>(&c, Request::BanList),
        BanOp::Remove { cidr, client } => call::<Unbanned>(&client, Request::BanRemove { cidr }),
    }
}

pub fn reload(c: &ClientArgs) -> anyhow::Result<()> {
    call::<Reloaded>(c, Request::Reload)
}

pub fn detect(op: DetectOp) -> anyhow::Result<()> {
    match op {
        DetectOp::Show(c) => call::<DetectState>(&c, Request::DetectShow),
        DetectOp::Set { key, value, client } => {
            call::<ThresholdChanged>(&client, Request::DetectSet { key, value })
        }
        DetectOp::Reset { key, client } => {
            call::<Vec<ThresholdChanged>>(&client, Request::DetectReset { key })
        }
    }
}

/// Connects again after `backoff`, which doubles (to 2 s) for the next.
fn reconnect(socket: &std::path::Path, backoff: &mut Duration) -> Result<Client, ClientError> {
    std::thread::sleep(*backoff);
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    Client::connect(socket)
}

pub fn explain(c: &ClientArgs, addr: String) -> anyhow::Result<()> {
    call::<Explanation>(c, Request::Explain { addr })
}

/// Prints the daemon's events, and with `follow` keeps printing new ones
/// until interrupted or the daemon stops. A follower whose connection
/// the daemon closed (to make room past `control.max_clients`, or idle
/// past `control.idle_timeout` while this process was stopped) connects
/// again and asks from the last event it printed, so it misses none.
pub fn events(c: &ClientArgs, follow: bool) -> anyhow::Result<()> {
    let (mut conn, socket) = connect(c)?;
    let mut fresh = true;
    let mut since = 0;
    let mut backoff = Duration::from_millis(50);
    loop {
        let batch: Events = match conn.call(Request::Events { since }) {
            Ok(b) => b,
            // Refused on a new connection, or an answer this CLI cannot
            // read (another release's daemon): the error stands.
            Err(e @ ClientError::Refused(_)) if fresh => return Err(e.into()),
            Err(e @ ClientError::Garbled(_)) => return Err(e.into()),
            // Closed on us (room made for others, or idle past the
            // timeout while this process was stopped: the daemon's
            // parting message comes back as the answer): connect again,
            // backing off while it keeps happening.
            Err(_) if follow => match reconnect(&socket, &mut backoff) {
                Ok(next) => {
                    conn = next;
                    fresh = true;
                    continue;
                }
                Err(_) => {
                    eprintln!(
                        "tollgate: the daemon at {} stopped: its socket refuses connections; no more events",
                        socket.display()
                    );
                    return Ok(());
                }
            },
            Err(e) => return Err(e.into()),
        };
        fresh = false;
        backoff = Duration::from_millis(50);
        let mut out = std::io::stdout().lock();
        for e in batch.events {
            since = since.max(e.seq);
            if c.json {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            } else {
                writeln!(out, "{}", e.text())?;
            }
        }
        if !follow {
            return Ok(());
        }
        out.flush()?;
        drop(out);
        std::thread::sleep(Duration::from_millis(500));
    }
}
