//! A small tokio TCP service over ustack: each line a client sends comes back in upper
//! case. ustack runs the TCP/IP stack on a TUN device; the service is ordinary tokio code
//! (`BufReader::lines`, `write_all`, one task per connection) on ustack's async sockets.
//!
//! ```text
//! sudo cargo run --release --features tokio --example tokio_echo -- \
//!     --tun ustack0 --addr 198.18.0.2/24 --port 7777
//! sudo ip addr add 198.18.0.1/24 dev ustack0 && sudo ip link set ustack0 up
//! echo hello | nc -q1 198.18.0.2 7777        # HELLO
//! ```
//!
//! `--connections N` ends it after N connections have been served (the test uses it).

use std::process::ExitCode;

use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use ustack_app::aio::{AsyncTcpListener, AsyncTcpStream};
use ustack_app::device::{bring_up, DeviceArgs, SHUTDOWN_GRACE};

#[derive(Parser, Debug)]
#[command(about = "An upper-casing line echo in tokio over ustack")]
struct Args {
    #[command(flatten)]
    device: DeviceArgs,
    /// TCP port to serve on.
    #[arg(long, default_value_t = 7777)]
    port: u16,
    /// Stop after serving this many connections (0: serve until killed).
    #[arg(long, default_value_t = 0)]
    connections: usize,
}

/// One connection: lines in, upper-case lines out, until the client closes its side.
async fn serve(stream: AsyncTcpStream) -> std::io::Result<usize> {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut lines = BufReader::new(reader).lines();
    let mut count = 0;
    while let Some(line) = lines.next_line().await? {
        writer.write_all(line.to_uppercase().as_bytes()).await?;
        writer.write_all(b"\n").await?;
        count += 1;
    }
    writer.shutdown().await?;
    Ok(count)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let device = match bring_up(&args.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tokio_echo: {e}");
            return ExitCode::from(2);
        }
    };
    let caller = device.runtime.caller();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let served = tokio.block_on(async {
        let mut listener = AsyncTcpListener::bind(&caller, args.port, 128).await?;
        println!(
            "tokio_echo: serving upper-case echo on {}:{}",
            device.addr.addr, args.port
        );
        let mut tasks = Vec::new();
        while args.connections == 0 || tasks.len() < args.connections {
            let (stream, peer) = listener.accept().await?;
            tasks.push(tokio::spawn(async move {
                match serve(stream).await {
                    Ok(lines) => println!("tokio_echo: {peer}: {lines} line(s)"),
                    Err(e) => eprintln!("tokio_echo: {peer}: {e}"),
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok::<usize, std::io::Error>(args.connections)
    });
    let stopped = device.shut_down(SHUTDOWN_GRACE);
    match (served, stopped) {
        (Ok(n), Ok(_)) => {
            println!("tokio_echo: served {n} connection(s)");
            ExitCode::SUCCESS
        }
        (Err(e), _) => {
            eprintln!("tokio_echo: {e}");
            ExitCode::FAILURE
        }
        (_, Err(e)) => {
            eprintln!("tokio_echo: {e}");
            ExitCode::FAILURE
        }
    }
}
