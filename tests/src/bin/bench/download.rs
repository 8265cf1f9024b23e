//! What the SYN cookies cost a real download: Debian's nginx in the flood
//! lab, 10 MiB fetched by the Python client over IPv4, first with no
//! Tollgate at all, then with the daemon and `[syn_cookies]`, alternating
//! a protected port (each download from a fresh address, so its handshake
//! is answered from XDP and completed by SYNPROXY, whose sequence
//! translation the whole download then goes through) with an unprotected
//! one. Medians of the rounds; the ratio is the "no less than 90%".

use std::net::{IpAddr, SocketAddr};

use lab::{
    daemon::{Daemon, config_on},
    flood_lab::{FloodLab, client_v4},
    handshake::download,
    netns::SERVER_IF,
    nginx::{BIG_PATH, Nginx},
};

const ROUNDS: usize = 15;
const PROTECTED: u16 = 80;
const PLAIN: u16 = 8080;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run() -> anyhow::Result<()> {
    let lab = FloodLab::new("bench-dl", ROUNDS * 2 + 1)?;
    let server: IpAddr = lab.server_v4().into();
    let _nginx = Nginx::start(&lab.server, &[server], PROTECTED, None)?;
    let _plain = Nginx::start(&lab.server, &[server], PLAIN, None)?;
    let mbit = |lab: &FloodLab, from: usize, port: u16| -> anyhow::Result<f64> {
        let d = download(
            &lab.clients,
            client_v4(from).into(),
            SocketAddr::new(server, port),
            BIG_PATH,
        )?;
        Ok(d.mbit_per_s())
    };
    let bare = median(
        (0..ROUNDS)
            .map(|_| mbit(&lab, 0, PROTECTED))
            .collect::<anyhow::Result<_>>()?,
    );
    let extra = format!(
        "[default_limit]\npackets_per_second = 1000000\nburst_packets = 1000000\n\
         [detect]\nmode = \"monitor\"\n\
         [syn_cookies]\nports = [{PROTECTED}]\nmode = \"always\"\n"
    );
    let d = Daemon::in_lab(lab, "bench-dl", |dir| config_on(dir, &[SERVER_IF], &extra));
    let (mut cookied, mut plain) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        cookied.push(mbit(&d.lab, 1 + i, PROTECTED)?);
        plain.push(mbit(&d.lab, 1 + ROUNDS + i, PLAIN)?);
    }
    let sent = d.json(&["status"])["syn_cookies"]["sent"]
        .as_u64()
        .unwrap_or(0);
    anyhow::ensure!(
        sent >= ROUNDS as u64,
        "only {sent} of the {ROUNDS} protected downloads had their handshake answered from XDP"
    );
    let (cookied, plain) = (median(cookied), median(plain));
    println!(
        "download, 10 MiB over IPv4 to nginx (medians of {ROUNDS}): no Tollgate {bare:.0} Mbit/s; with the daemon, a port without cookies {plain:.0} Mbit/s, through an XDP cookie and SYNPROXY {cookied:.0} Mbit/s; cookie / without = {:.2}, cookie / no Tollgate = {:.2}",
        cookied / plain,
        cookied / bare
    );
    Ok(())
}
