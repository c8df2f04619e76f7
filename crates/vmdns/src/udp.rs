//! The UDP fast path: one receive loop per `SO_REUSEPORT` socket that
//! decodes, answers and sends in place (no task or channel per query).
//! TCP (`tcp.rs`) gives the same answers through the same functions.

use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use tokio::net::UdpSocket;

use crate::handler::{Answer, answer};
use crate::wire::EDNS_UDP_SIZE;
use crate::zone::{TTL, Zone};

/// Serve `sock` until `stop` fires.
pub(crate) async fn serve(
    sock: UdpSocket,
    zone: Arc<Zone>,
    soa: Record,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    let soa_bytes = crate::wire::soa_wire();
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS receive failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let packet = &buf[..n];
        let reply = crate::wire::fast_reply(packet, &zone, &soa_bytes)
            .or_else(|| respond(packet, &zone, &soa));
        if let Some(reply) = reply
            && let Err(e) = sock.send_to(&reply, peer).await
        {
            tracing::debug!(error = %e, %peer, "cannot send DNS reply");
        }
    }
}

/// The wire reply to one packet; `None` for what deserves no answer
/// (undecodable packets, responses).
pub fn respond(packet: &[u8], zone: &Zone, soa: &Record) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    if let Some(e) = &req.edns {
        // Our payload size, version 0, the DO bit copied (RFC 3225; the
        // zone is unsigned, so it adds nothing), no options.
        let mut out = Edns::new();
        out.set_max_payload(EDNS_UDP_SIZE);
        out.set_version(0);
        out.set_dnssec_ok(e.flags().dnssec_ok);
        resp.set_edns(out);
        if e.version() != 0 {
            // RFC 6891 6.1.3: an unknown EDNS version gets BADVERS only.
            resp.metadata.response_code = ResponseCode::BADVERS;
            return resp.to_vec().ok();
        }
    }
    let q = match (req.metadata.op_code, req.queries.as_slice()) {
        (OpCode::Query, [q]) => q,
        (OpCode::Query, _) => {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp.to_vec().ok();
        }
        _ => {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp.to_vec().ok();
        }
    };
    resp.add_query(q.clone());
    if q.query_class() != DNSClass::IN {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp.to_vec().ok();
    }
    let owner: Name = q.name().clone();
    resp.metadata.authoritative = true;
    match answer(zone, &owner.to_ascii(), q.query_type()) {
        Answer::A(ip) => {
            resp.add_answer(Record::from_rdata(owner, TTL, RData::A(A(ip))));
        }
        Answer::Ptr(name) => match Name::from_ascii(format!("{name}.vm.")) {
            Ok(target) => {
                resp.add_answer(Record::from_rdata(owner, TTL, RData::PTR(PTR(target))));
            }
            Err(_) => resp.metadata.response_code = ResponseCode::ServFail,
        },
        Answer::NoData => {
            resp.add_authority(soa.clone());
        }
        Answer::NxDomain => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            resp.add_authority(soa.clone());
        }
        Answer::Refused => {
            resp.metadata.authoritative = false;
            resp.metadata.response_code = ResponseCode::Refused;
        }
    }
    resp.to_vec().ok()
}
