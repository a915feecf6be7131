//! Baseline for `bench/run.sh`: the minimal tokio echo, no framing. TCP
//! copies whatever it reads straight back (64 KiB reads, `write_all`); UDP
//! answers each datagram with `recv_from`/`send_to`. It shows what plain
//! tokio costs on this machine, next to the C baselines and netservd.
//!
//! Try it: `cargo run --release --example tokio_echo -- tcp 127.0.0.1:7100`
//! then `netservd bench tcp://127.0.0.1:7100 -c 64 --pipeline 16`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(proto), Some(addr)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tokio_echo tcp|udp ADDR");
        std::process::exit(2);
    };
    if proto == "udp" {
        let s = UdpSocket::bind(addr).await?;
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, src) = s.recv_from(&mut buf).await?;
            let _ = s.send_to(&buf[..n], src).await;
        }
    }
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}
