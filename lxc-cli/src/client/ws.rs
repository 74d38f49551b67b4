//! Byte streams over operation websockets, framed as LXD frames them (`shared/ws`): data travels
//! in binary messages; a text message (normally empty) or a close frame is end-of-stream, in
//! both directions.

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};

/// What one websocket message means for the byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data(Bytes),
    Eof,
    /// Control traffic (ping/pong) with no meaning for the stream.
    Skip,
}

pub fn classify(msg: &Message) -> Frame {
    match msg {
        Message::Binary(b) => Frame::Data(b.clone()),
        Message::Text(_) | Message::Close(_) => Frame::Eof,
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Frame::Skip,
    }
}

/// The end-of-stream marker we send: an empty text message.
pub fn eof_message() -> Message {
    Message::Text("".into())
}

/// Copy a websocket's data into `out` until end-of-stream. Returns the bytes copied.
pub async fn ws_to_writer<S, W>(stream: &mut S, out: &mut W) -> std::io::Result<u64>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut total = 0u64;
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { break };
        match classify(&msg) {
            Frame::Data(b) => {
                out.write_all(&b).await?;
                out.flush().await?;
                total += b.len() as u64;
            }
            Frame::Eof => break,
            Frame::Skip => {}
        }
    }
    Ok(total)
}

/// Copy `input` into a websocket as binary messages, then send the end-of-stream marker.
pub async fn reader_to_ws<R, S>(input: &mut R, sink: &mut S) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if sink
            .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .await
            .is_err()
        {
            return Ok(total);
        }
    }
    let _ = sink.send(eof_message()).await;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[test]
    fn frames_are_classified_like_lxd() {
        assert_eq!(
            classify(&Message::Binary(Bytes::from_static(b"hi\n"))),
            Frame::Data(Bytes::from_static(b"hi\n"))
        );
        assert_eq!(classify(&Message::Text("".into())), Frame::Eof);
        assert_eq!(classify(&Message::Close(None)), Frame::Eof);
        assert_eq!(classify(&Message::Ping(Bytes::new())), Frame::Skip);
    }

    #[tokio::test]
    async fn copies_until_the_barrier() {
        let msgs = vec![
            Ok(Message::Ping(Bytes::from_static(b"keepalive"))),
            Ok(Message::Binary(Bytes::from_static(b"hi\n"))),
            Ok(Message::Binary(Bytes::from_static(b"there\n"))),
            Ok(Message::Text("".into())),
            Ok(Message::Binary(Bytes::from_static(b"after the barrier"))),
        ];
        let mut s = stream::iter(msgs);
        let mut out = Vec::new();
        let n = ws_to_writer(&mut s, &mut out).await.unwrap();
        assert_eq!(out, b"hi\nthere\n");
        assert_eq!(n, 9);
    }

    #[tokio::test]
    async fn sends_data_then_an_empty_text_message() {
        let mut got: Vec<Message> = Vec::new();
        {
            let mut sink = (&mut got)
                .sink_map_err(|e: std::convert::Infallible| -> tungstenite::Error { match e {} });
            let mut input: &[u8] = b"input\n";
            reader_to_ws(&mut input, &mut sink).await.unwrap();
        }
        assert_eq!(
            got,
            vec![
                Message::Binary(Bytes::from_static(b"input\n")),
                Message::Text("".into())
            ]
        );
    }
}
