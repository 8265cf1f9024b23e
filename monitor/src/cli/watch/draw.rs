//! Draws the live view with ratatui: a header, the rates (passed,
//! dropped, drops by reason) as sparklines, the top talkers, the bans in
//! force with their time left, and the latest events.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style, Stylize as _},
    text::Line,
    widgets::{Block, Paragraph, Row, Sparkline, Table},
};

use super::model::{Model, Series};
use crate::cli::print::{Text as _, number, rate};

/// Rows a sparkline line takes.
const RATE_ROWS: u16 = 1;

pub fn draw(f: &mut Frame, m: &Model) {
    let reasons = m.reasons();
    let rates_height = 2 + RATE_ROWS * (2 + reasons.len() as u16);
    let bans_height = 2 + (m.bans.len() as u16).clamp(1, 6);
    let [header, rates, talkers, bans, events] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(rates_height),
        Constraint::Min(5),
        Constraint::Length(bans_height),
        Constraint::Length(2 + super::model::EVENTS as u16),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(header_line(m)), header);
    draw_rates(f, rates, m, &reasons);
    draw_talkers(f, talkers, m);
    draw_bans(f, bans, m);
    let lines: Vec<Line> = m.events.iter().map(|e| Line::from(e.text())).collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" recent events ")),
        events,
    );
}

fn header_line(m: &Model) -> Line<'static> {
    let s = m.status.as_ref();
    let mut text = match s {
        Some(s) => format!(
            "tollgate {} on {} ({}), up {}s, bans: {}",
            s.version,
            s.interfaces.join(", "),
            s.attach_mode,
            s.uptime_seconds,
            s.bans_active
        ),
        None => "tollgate: waiting for the daemon".into(),
    };
    text.push_str(&format!("  sort: {}  [s]ort [p]ause [q]uit", m.sort.name()));
    let line = Line::from(text);
    if m.paused {
        Line::from(vec![
            " PAUSED ".reversed(),
            " ".into(),
            line.to_string().into(),
        ])
    } else {
        line
    }
}

fn draw_rates(f: &mut Frame, area: Rect, m: &Model, reasons: &[(&str, &Series)]) {
    let block = Block::bordered().title(" packets per second (last minute) ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut rows: Vec<(String, &Series)> = vec![
        (format!("passed {:>10}", now(&m.passed)), &m.passed),
        (format!("dropped {:>9}", now(&m.dropped)), &m.dropped),
    ];
    for (reason, s) in reasons {
        rows.push((format!("  {reason} {}", now(s)), s));
    }
    let areas = Layout::vertical(vec![Constraint::Length(RATE_ROWS); rows.len()]).split(inner);
    for ((label, series), row) in rows.into_iter().zip(areas.iter()) {
        let [l, r] = Layout::horizontal([Constraint::Length(34), Constraint::Min(10)]).areas(*row);
        f.render_widget(Paragraph::new(label), l);
        // The newest values at the right edge.
        let width = r.width as usize;
        let data: Vec<u64> = series
            .iter()
            .skip(series.len().saturating_sub(width))
            .copied()
            .collect();
        f.render_widget(Sparkline::default().data(&data), r);
    }
}

/// The newest rate of `s`, as the view writes it.
pub(super) fn now(s: &Series) -> String {
    rate(s.back().map(|v| *v as f64))
}

fn draw_talkers(f: &mut Frame, area: Rect, m: &Model) {
    let rows: Vec<Row> = m
        .top
        .iter()
        .flat_map(|t| t.sources.iter())
        .map(|s| {
            Row::new(vec![
                s.source.clone(),
                rate(s.pps),
                rate(s.drop_pps),
                s.drop_reason.clone().unwrap_or_else(|| "-".into()),
                number(s.packets as f64),
                number(s.dropped as f64),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(30),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(22),
            Constraint::Length(14),
            Constraint::Length(14),
        ],
    )
    .header(
        Row::new(vec![
            "source",
            "packets/s",
            "drops/s",
            "dropped for",
            "packets",
            "dropped",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(format!(" top talkers by {} ", m.sort.name())));
    f.render_widget(table, area);
}

fn draw_bans(f: &mut Frame, area: Rect, m: &Model) {
    let rows: Vec<Row> = m
        .bans
        .iter()
        .map(|b| {
            Row::new(vec![
                b.cidr.clone(),
                format!("{}s left", b.remaining_seconds),
                b.origin.clone(),
                b.reason.clone().unwrap_or_default(),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(30),
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Min(10),
        ],
    )
    .block(Block::bordered().title(format!(" bans in force ({}) ", m.bans.len())));
    f.render_widget(table, area);
}
