use aya::programs::Xdp;
fn main() -> anyhow::Result<()> {
    let mut ebpf = tollgate::loader::load()?;
    for name in ["tollgate", "tollgate_replay", "tollgate_parse"] {
        let p: &mut Xdp = ebpf.program_mut(name).unwrap().try_into()?;
        p.load()?;
        println!("{name} loaded");
    }
    Ok(())
}
