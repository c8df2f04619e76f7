//! The common query, answered without a full decode: a standard query
//! with exactly one question and no other records (what resolvers and load
//! tools send without EDNS). Anything else returns `None` and goes through
//! the full hickory decoder ([`crate::respond`]). Bounds are checked on
//! every read, so a malformed packet only ever yields `None`.

use hickory_proto::rr::RecordType;

use crate::handler::{Answer, answer};
use crate::zone::{TTL, Zone};

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const CLASS_IN: u16 = 1;

/// Reply to `packet` when it is a plain one-question query; `soa` is the
/// zone's SOA record, already encoded.
pub fn fast_reply(packet: &[u8], zone: &Zone, soa: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let counts = [
        u16::from_be_bytes([packet[4], packet[5]]),
        u16::from_be_bytes([packet[6], packet[7]]),
        u16::from_be_bytes([packet[8], packet[9]]),
        u16::from_be_bytes([packet[10], packet[11]]),
    ];
    if qr || opcode != 0 || counts != [1, 0, 0, 0] {
        return None;
    }
    // QNAME: plain labels (no compression in a question), lower-cased.
    let mut pos = 12;
    let mut name = String::with_capacity(64);
    loop {
        let len = *packet.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 || name.len() + len > 253 {
            return None;
        }
        let label = packet.get(pos..pos + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
        pos += len;
    }
    let qtype = u16::from_be_bytes(packet.get(pos..pos + 2)?.try_into().ok()?);
    let qclass = u16::from_be_bytes(packet.get(pos + 2..pos + 4)?.try_into().ok()?);
    let question_end = pos + 4;
    if qclass != CLASS_IN || question_end != packet.len() {
        return None;
    }
    let rd = flags & 0x0100;
    let mut out = Vec::with_capacity(question_end + 64 + soa.len());
    out.extend_from_slice(&packet[0..2]);
    out.extend_from_slice(&[0, 0]); // flags, set below
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // counts, set below
    out.extend_from_slice(&packet[12..question_end]);
    let (mut aa, mut rcode, mut an, mut ns) = (true, 0u16, 0u16, 0u16);
    match answer(zone, &name, RecordType::from(qtype)) {
        Answer::A(ip) => {
            push_rr_head(&mut out, TYPE_A, 4);
            out.extend_from_slice(&ip.octets());
            an = 1;
        }
        Answer::Ptr(target) => {
            let mut rdata = Vec::with_capacity(target.len() + 6);
            for label in target.split('.').chain(["vm"]) {
                if label.is_empty() || label.len() > 63 {
                    return None;
                }
                rdata.push(label.len() as u8);
                rdata.extend_from_slice(label.as_bytes());
            }
            rdata.push(0);
            push_rr_head(&mut out, TYPE_PTR, rdata.len() as u16);
            out.extend_from_slice(&rdata);
            an = 1;
        }
        Answer::NoData => {
            out.extend_from_slice(soa);
            ns = 1;
        }
        Answer::NxDomain => {
            out.extend_from_slice(soa);
            ns = 1;
            rcode = 3;
        }
        Answer::Refused => {
            aa = false;
            rcode = 5;
        }
    }
    let flags = 0x8000 | if aa { 0x0400 } else { 0 } | rd | rcode;
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&an.to_be_bytes());
    out[8..10].copy_from_slice(&ns.to_be_bytes());
    Some(out)
}

/// [`crate::handler::soa_record`] encoded without name compression, so it
/// can be appended anywhere in a reply.
pub fn soa_wire() -> Vec<u8> {
    fn name(out: &mut Vec<u8>, labels: &[&str]) {
        for l in labels {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    }
    let mut rdata = Vec::new();
    name(&mut rdata, &["ns", "vm"]);
    name(&mut rdata, &["hostmaster", "vm"]);
    for v in [1u32, 60, 60, 600, TTL] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::new();
    name(&mut out, &["vm"]);
    out.extend_from_slice(&6u16.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

/// Owner = the question's name (pointer to offset 12), class IN, our TTL.
fn push_rr_head(out: &mut Vec<u8>, rtype: u16, rdlen: u16) {
    out.extend_from_slice(&[0xc0, 0x0c]);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&rdlen.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData};

    fn zone() -> Zone {
        let z = Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24));
        z.publish("dev", Ipv4Addr::new(172, 30, 0, 9));
        z
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 77;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    /// The fast path and the full decoder give the same reply.
    #[test]
    fn agrees_with_the_full_path() {
        let z = zone();
        let soa = crate::handler::soa_record();
        let soa_bytes = soa_wire();
        for (name, t) in [
            ("dev.vm.", RecordType::A),
            ("DEV.vm.", RecordType::A),
            ("dev.vm.", RecordType::AAAA),
            ("nope.vm.", RecordType::A),
            ("9.0.30.172.in-addr.arpa.", RecordType::PTR),
            ("8.0.30.172.in-addr.arpa.", RecordType::PTR),
            ("example.com.", RecordType::A),
        ] {
            let q = query(name, t);
            let fast = Message::from_vec(&fast_reply(&q, &z, &soa_bytes).unwrap()).unwrap();
            let full = Message::from_vec(&crate::respond(&q, &z, &soa).unwrap()).unwrap();
            assert_eq!(fast.metadata.id, 77);
            assert_eq!(
                fast.metadata.response_code, full.metadata.response_code,
                "{name}"
            );
            assert_eq!(
                fast.metadata.authoritative, full.metadata.authoritative,
                "{name}"
            );
            assert_eq!(
                fast.metadata.recursion_desired,
                full.metadata.recursion_desired
            );
            assert_eq!(fast.queries, full.queries, "{name}");
            assert_eq!(fast.answers, full.answers, "{name}");
            assert_eq!(fast.authorities, full.authorities, "{name}");
        }
        let r = Message::from_vec(
            &fast_reply(&query("dev.vm.", RecordType::A), &z, &soa_bytes).unwrap(),
        )
        .unwrap();
        assert_eq!(
            r.answers[0].data,
            RData::A(Ipv4Addr::new(172, 30, 0, 9).into())
        );
        let r =
            Message::from_vec(&fast_reply(&query("x.vm.", RecordType::A), &z, &soa_bytes).unwrap())
                .unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn declines_what_it_does_not_parse() {
        let z = zone();
        let q = query("dev.vm.", RecordType::A);
        assert!(
            fast_reply(&q[..q.len() - 1], &z, &[]).is_none(),
            "truncated"
        );
        let mut long = q.clone();
        long.push(0);
        assert!(fast_reply(&long, &z, &[]).is_none(), "trailing bytes");
        let mut two = q.clone();
        two[5] = 2;
        assert!(fast_reply(&two, &z, &[]).is_none(), "two questions");
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(fast_reply(&resp, &z, &[]).is_none(), "a response");
        let mut ptr = q.clone();
        ptr[12] = 0xc0;
        assert!(
            fast_reply(&ptr, &z, &[]).is_none(),
            "compression in a question"
        );
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(97) ^ n).collect();
            let _ = fast_reply(&junk, &z, &[]);
        }
    }
}
