//! `tollgate top --watch`: the live view. Every refresh asks the daemon
//! for its status, top talkers, bans and new events (`model` keeps the
//! rates and history), and draws them in place (`draw`, ratatui); keys
//! sort, pause and quit. When stdout is not a terminal the same view is
//! printed as plain text at each refresh (`plain`).

mod draw;
mod model;
mod plain;

use std::{
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use ratatui::crossterm::event::{self, Event as Key, KeyCode, KeyEventKind, KeyModifiers};

use model::Model;
pub use model::Sort;

use super::{args::ClientArgs, client};
use crate::control::{
    Client, Request,
    replies::{Bans, Events, Status, Top},
};

/// What the view asks for at each refresh.
pub struct Options {
    pub n: usize,
    pub sort: Sort,
    pub every: Duration,
    /// Refreshes before it ends by itself (none: until `q` or Ctrl-C).
    pub count: Option<u64>,
}

pub fn watch(c: &ClientArgs, o: Options) -> anyhow::Result<()> {
    let (conn, socket) = client::connect(c)?;
    let mut feed = Feed {
        conn,
        socket,
        started: Instant::now(),
    };
    let mut m = Model::new(o.sort);
    if !std::io::stdout().is_terminal() {
        return plain::run(&mut feed, &mut m, &o);
    }
    let mut terminal = ratatui::init();
    let result = live(&mut terminal, &mut feed, &mut m, &o);
    ratatui::restore();
    result
}

fn live(
    terminal: &mut ratatui::DefaultTerminal,
    feed: &mut Feed,
    m: &mut Model,
    o: &Options,
) -> anyhow::Result<()> {
    let mut refreshes = 0u64;
    loop {
        if !m.paused {
            feed.refresh(m, o.n)?;
            refreshes += 1;
        }
        terminal.draw(|f| draw::draw(f, m))?;
        if o.count.is_some_and(|n| refreshes >= n) {
            return Ok(());
        }
        let next = Instant::now() + o.every;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left)? {
                break;
            }
            let Key::Key(k) = event::read()? else {
                continue;
            };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            match k.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                KeyCode::Char('p') | KeyCode::Char(' ') => m.paused = !m.paused,
                KeyCode::Char('s') => {
                    m.sort = m.sort.next();
                    if !m.paused {
                        feed.refresh(m, o.n)?;
                    }
                }
                _ => continue,
            }
            terminal.draw(|f| draw::draw(f, m))?;
        }
    }
}

/// The daemon's answers, into the model.
struct Feed {
    conn: Client,
    socket: std::path::PathBuf,
    started: Instant,
}

impl Feed {
    /// One refresh; a connection the daemon closed is opened again once.
    fn refresh(&mut self, m: &mut Model, n: usize) -> anyhow::Result<()> {
        match self.ask(m, n) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.conn = Client::connect(&self.socket).map_err(|e| {
                    anyhow::anyhow!(
                        "the daemon at {} stopped answering: {e}",
                        self.socket.display()
                    )
                })?;
                self.ask(m, n)
            }
        }
    }

    fn ask(&mut self, m: &mut Model, n: usize) -> anyhow::Result<()> {
        let status: Status = self.conn.call(Request::Status)?;
        m.status(status, self.started.elapsed().as_secs_f64());
        let by = m.sort.name().to_owned();
        m.top = Some(self.conn.call::<Top>(Request::Top { n, by })?);
        m.bans = self.conn.call::<Bans>(Request::BanList)?.bans;
        let events: Events = self.conn.call(Request::Events { since: m.last_seq })?;
        m.events(events.events);
        Ok(())
    }
}
