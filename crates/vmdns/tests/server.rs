//! The server over real UDP on loopback: answers, NXDOMAIN, PTR, and
//! malformed packets that must not stop it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use banger_vmdns::{DnsServer, Zone};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut msg = Message::query();
    msg.metadata.id = 4242;
    msg.metadata.op_code = OpCode::Query;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .expect("the server answers within 3 s")
        .unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, 4242);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

#[tokio::test]
async fn answers_withdraws_and_survives_garbage() {
    let zone = Arc::new(Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24)));
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&zone))
        .await
        .unwrap();
    let addr = server.local_addr();
    let ip = Ipv4Addr::new(172, 30, 0, 7);
    zone.publish("dev", ip);

    let r = ask(addr, "dev.vm.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data, RData::A(ip.into()));
    assert!(r.answers[0].ttl <= banger_vmdns::TTL);

    let r = ask(addr, "7.0.30.172.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data.to_string(), "dev.vm.");

    // Garbage of every shape: empty, a lone header, random bytes, a header
    // announcing records that are not there, a huge label count.
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 12],
        vec![0xff; 12],
        vec![
            0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        (0..512u32).map(|i| (i * 37 % 251) as u8).collect(),
    ];
    let mut deep = vec![0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    deep.extend(std::iter::repeat_n([0xc0u8, 0x0c], 100).flatten());
    packets.push(deep);
    for p in &packets {
        junk.send_to(p, addr).await.unwrap();
    }
    // Two questions in one message is a format error, not a crash.
    let mut two = Message::query();
    two.add_query(Query::query(
        Name::from_ascii("dev.vm.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("x.vm.").unwrap(),
        RecordType::A,
    ));
    junk.send_to(&two.to_vec().unwrap(), addr).await.unwrap();

    // Still serving after the garbage.
    zone.withdraw("dev");
    let r = ask(addr, "dev.vm.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());
    assert_eq!(r.authorities.len(), 1, "NXDOMAIN carries the SOA");
    let r = ask(addr, "example.com.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    server.shutdown().await.unwrap();
}

/// One query over a TCP connection (two-byte length, message).
async fn ask_tcp(conn: &mut tokio::net::TcpStream, name: &str) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut msg = Message::query();
    msg.metadata.id = 77;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let wire = msg.to_vec().unwrap();
    let mut out = (wire.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&wire);
    conn.write_all(&out).await.unwrap();
    let read = async {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await?;
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .expect("the server answers over TCP within 3 s")
        .unwrap();
    let reply = Message::from_vec(&body).unwrap();
    assert_eq!(reply.metadata.id, 77);
    reply
}

#[tokio::test]
async fn answers_over_tcp_and_caps_the_connections() {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;
    let zone = Arc::new(Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24)));
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&zone))
        .await
        .unwrap();
    let addr = server.local_addr();
    zone.publish("dev", Ipv4Addr::new(172, 30, 0, 7));

    // Several queries on one connection, as RFC 7766 allows.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        let r = ask_tcp(&mut conn, "dev.vm.").await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
    }
    let r = ask_tcp(&mut conn, "nope.vm.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    // Fill every slot (this connection holds one); one more is closed at once.
    let mut held = vec![conn];
    while held.len() < banger_vmdns::TCP_MAX_CONNECTIONS {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server take them all before the extra one arrives.
    let r = ask_tcp(held.last_mut().unwrap(), "dev.vm.").await;
    assert_eq!(r.answers.len(), 1);
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut byte))
        .await
        .expect("a connection over the cap is closed at once, not left waiting")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    // A freed slot serves again.
    held.pop();
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut probe = [0u8; 1];
        // A refused connection reads EOF at once; a served one times out.
        match tokio::time::timeout(Duration::from_millis(100), c.read(&mut probe)).await {
            Err(_) => {
                again = Some(c);
                break;
            }
            Ok(_) => continue,
        }
    }
    let mut again = again.expect("a slot frees when a connection closes");
    assert_eq!(ask_tcp(&mut again, "dev.vm.").await.answers.len(), 1);
    drop(held);
    server.shutdown().await.unwrap();
}
