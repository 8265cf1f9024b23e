//! The subcommands that talk to the running daemon: each sends one
//! request and prints its typed reply, as text or (`--json`) as JSON.

use std::io::Write as _;

use serde::{Serialize, de::DeserializeOwned};

use super::{
    args::{BanOp, ClientArgs, LimitOp, RuleActionArg, RulesOp, TopBy},
    print::Text,
};
use crate::control::{
    Client, Request,
    replies::{
        Banned, Bans, Events, LimitChanged, Reloaded, RuleChanged, Rules, Status, Top, Unbanned,
    },
};

/// Sends `req` and prints the reply `R`.
fn call<R: DeserializeOwned + Serialize + Text>(
    c: &ClientArgs,
    req: Request,
) -> anyhow::Result<()> {
    let reply: R = Client::connect(&c.socket)?.call(req)?;
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
            client,
        } => call::<Banned>(&client, Request::BanAdd { cidr, ttl, reason }),
        BanOp::List(c) => call::<Bans>(&c, Request::BanList),
        BanOp::Remove { cidr, client } => call::<Unbanned>(&client, Request::BanRemove { cidr }),
    }
}

pub fn reload(c: &ClientArgs) -> anyhow::Result<()> {
    call::<Reloaded>(c, Request::Reload)
}

/// Prints the daemon's events, and with `follow` keeps printing new ones
/// (until interrupted).
pub fn events(c: &ClientArgs, follow: bool) -> anyhow::Result<()> {
    let mut conn = Client::connect(&c.socket)?;
    let mut since = 0;
    loop {
        let batch: Events = conn.call(Request::Events { since })?;
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
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
