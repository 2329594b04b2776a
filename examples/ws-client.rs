//! A tiny WebSocket client for trying wsgate without installing one:
//! `cargo run --example ws-client -- ws://127.0.0.1:8080/echo "hello"`.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/echo".into());
    let text = args.next().unwrap_or_else(|| "hello through wsgate".into());
    let (mut ws, resp) = tokio_tungstenite::connect_async(&url).await?;
    println!("connected to {url} (HTTP {})", resp.status());
    ws.send(Message::text(text)).await?;
    if let Some(reply) = ws.next().await {
        println!("received: {}", reply?);
    }
    ws.close(None).await?;
    Ok(())
}
