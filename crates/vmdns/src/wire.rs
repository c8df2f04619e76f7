//! The common query, answered without a full decode: a standard query
//! with exactly one question and no other records, or one question and an
//! EDNS(0) OPT record (what `dig`, glibc with `edns0` and systemd-resolved
//! send). Anything else (other EDNS versions, options hickory interprets,
//! more records) returns `None` and goes through the full hickory decoder
//! ([`crate::respond`]), which answers it the same way. Bounds are checked
//! on every read, so a malformed packet only ever yields `None`.
//!
//! EDNS answers carry an OPT record with our UDP payload size
//! ([`EDNS_UDP_SIZE`]), version 0, no options, and the query's DO bit
//! copied (RFC 3225); the zone is unsigned, so DO adds no records.

use hickory_proto::rr::RecordType;

use crate::handler::{Answer, answer};
use crate::zone::{TTL, Zone};

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The DO ("DNSSEC OK") bit of an OPT record's flags.
const FLAG_DO: u16 = 0x8000;

/// The UDP payload size banger advertises in EDNS answers (the DNS flag
/// day's 1232: no fragmentation on any common path; every answer of the
/// zone fits in 512 anyway).
pub const EDNS_UDP_SIZE: u16 = 1232;

/// Option codes whose content hickory parses (NSID, DAU, client subnet):
/// a query with one goes through the full decoder, so both paths agree on
/// what is malformed.
const PARSED_OPTIONS: [u16; 3] = [3, 5, 8];

/// The OPT record of a query: `Some(do_bit)` for a well-formed EDNS(0)
/// record filling `rest` exactly; `None` for anything else.
fn edns0(rest: &[u8]) -> Option<bool> {
    let (&[0], rest) = rest.split_first_chunk::<1>()? else {
        return None; // owner must be the root
    };
    let field = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(rest.get(at..at + 2)?.try_into().ok()?))
    };
    if field(0)? != TYPE_OPT {
        return None;
    }
    let version = *rest.get(5)?;
    let flags = field(6)?;
    let rdlen = field(8)? as usize;
    if version != 0 || rest.len() != 10 + rdlen {
        return None;
    }
    let mut options = &rest[10..];
    while !options.is_empty() {
        let code = u16::from_be_bytes(options.get(0..2)?.try_into().ok()?);
        let len = u16::from_be_bytes(options.get(2..4)?.try_into().ok()?) as usize;
        if PARSED_OPTIONS.contains(&code) {
            return None;
        }
        options = options.get(4 + len..)?;
    }
    Some(flags & FLAG_DO != 0)
}

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
    if qr || opcode != 0 || counts[..3] != [1, 0, 0] || counts[3] > 1 {
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
    if qclass != CLASS_IN {
        return None;
    }
    let edns = match counts[3] {
        0 if question_end == packet.len() => None,
        1 => Some(edns0(packet.get(question_end..)?)?),
        _ => return None,
    };
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
    if let Some(dnssec_ok) = edns {
        // Root owner, OPT, our payload size, rcode high 0, version 0,
        // flags, no options.
        out.extend_from_slice(&[0]);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(if dnssec_ok { FLAG_DO } else { 0 }).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out[10..12].copy_from_slice(&1u16.to_be_bytes());
    }
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

    /// An OPT record: payload size, EDNS version, DO bit, options as
    /// (code, data).
    type Opt = (u16, u8, bool, Vec<(u16, Vec<u8>)>);

    /// A query, with an OPT record when `edns` is given.
    fn edns_query(id: u16, name: &str, t: RecordType, rd: bool, edns: Option<Opt>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = rd;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        let mut q = m.to_vec().unwrap();
        if let Some((payload, version, dnssec_ok, options)) = edns {
            q[11] = 1;
            q.push(0);
            q.extend_from_slice(&TYPE_OPT.to_be_bytes());
            q.extend_from_slice(&payload.to_be_bytes());
            q.extend_from_slice(&[0, version]);
            q.extend_from_slice(&(if dnssec_ok { FLAG_DO } else { 0 }).to_be_bytes());
            let rdata: Vec<u8> = options
                .iter()
                .flat_map(|(code, data)| {
                    let mut o = code.to_be_bytes().to_vec();
                    o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    o.extend_from_slice(data);
                    o
                })
                .collect();
            q.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            q.extend_from_slice(&rdata);
        }
        q
    }

    /// Both paths' replies to `q`, decoded; the fast one must exist.
    fn both(q: &[u8], z: &Zone) -> (Message, Message) {
        let fast = fast_reply(q, z, &soa_wire()).expect("the fast path answers");
        let full = crate::respond(q, z, &crate::handler::soa_record()).unwrap();
        (
            Message::from_vec(&fast).unwrap(),
            Message::from_vec(&full).unwrap(),
        )
    }

    #[test]
    fn edns_queries_get_our_opt_with_the_do_bit_copied() {
        let z = zone();
        for dnssec_ok in [false, true] {
            // What dig sends: EDNS 0, 1232 bytes, a cookie.
            let q = edns_query(
                9,
                "dev.vm.",
                RecordType::A,
                true,
                Some((1232, 0, dnssec_ok, vec![(10, vec![7; 8])])),
            );
            let (fast, full) = both(&q, &z);
            for m in [&fast, &full] {
                let e = m.edns.as_ref().expect("an OPT in the answer");
                assert_eq!(e.max_payload(), EDNS_UDP_SIZE);
                assert_eq!(e.version(), 0);
                assert_eq!(e.flags().dnssec_ok, dnssec_ok);
                assert!(e.options().as_ref().is_empty(), "no options echoed");
                assert_eq!(
                    m.answers[0].data,
                    RData::A(Ipv4Addr::new(172, 30, 0, 9).into())
                );
            }
        }
        // EDNS version 1: BADVERS from the full decoder, with an OPT of
        // version 0; the fast path declines.
        let q = edns_query(
            9,
            "dev.vm.",
            RecordType::A,
            true,
            Some((4096, 1, false, vec![])),
        );
        assert!(fast_reply(&q, &z, &soa_wire()).is_none());
        let full =
            Message::from_vec(&crate::respond(&q, &z, &crate::handler::soa_record()).unwrap())
                .unwrap();
        // 16 (hickory names the shared code BADSIG when decoding).
        assert_eq!(u16::from(full.metadata.response_code), 16);
        assert_eq!(full.edns.as_ref().unwrap().version(), 0);
        assert!(full.answers.is_empty());
        // Client subnet: left to the decoder that parses it.
        let q = edns_query(
            9,
            "dev.vm.",
            RecordType::A,
            true,
            Some((4096, 0, false, vec![(8, vec![0, 1, 24, 0, 10, 0, 0])])),
        );
        assert!(fast_reply(&q, &z, &soa_wire()).is_none());
        // An option running past the record, an OPT not owned by the root.
        let mut cut = edns_query(
            1,
            "dev.vm.",
            RecordType::A,
            true,
            Some((512, 0, false, vec![(10, vec![1; 8])])),
        );
        let n = cut.len();
        cut[n - 9] = 9;
        assert!(fast_reply(&cut, &z, &soa_wire()).is_none());
        let mut owned = edns_query(
            1,
            "dev.vm.",
            RecordType::A,
            true,
            Some((512, 0, false, vec![])),
        );
        let at = owned.len() - 11;
        owned[at] = 1;
        assert!(fast_reply(&owned, &z, &soa_wire()).is_none());
    }

    proptest::proptest! {
        /// Over generated queries, with and without EDNS, the fast path
        /// answers every EDNS(0) or plain one-question query exactly as
        /// the full decoder does.
        #[test]
        fn fast_and_full_paths_agree(
            id: u16,
            rd: bool,
            name in proptest::sample::select(vec![
                "dev.vm.", "DeV.Vm.", "vm.", "nope.vm.", "a.dev.vm.", "example.com.",
                "9.0.30.172.in-addr.arpa.", "8.0.30.172.in-addr.arpa.",
                "9.0.31.172.in-addr.arpa.", "x.0.30.172.in-addr.arpa.", "_srv.vm.",
            ]),
            qtype in proptest::sample::select(vec![
                RecordType::A, RecordType::AAAA, RecordType::PTR, RecordType::ANY,
                RecordType::SOA, RecordType::MX, RecordType::TXT,
            ]),
            edns in proptest::option::of((
                0u16..=65535,
                proptest::bool::ANY,
                proptest::collection::vec(
                    (
                        proptest::sample::select(vec![10u16, 12, 15, 65001]),
                        proptest::collection::vec(0u8..=255, 0..12),
                    ),
                    0..3,
                ),
            )),
        ) {
            let z = zone();
            let edns = edns.map(|(payload, dnssec_ok, opts)| (payload, 0, dnssec_ok, opts));
            let q = edns_query(id, name, qtype, rd, edns.clone());
            let (fast, full) = both(&q, &z);
            proptest::prop_assert_eq!(fast.metadata, full.metadata);
            proptest::prop_assert_eq!(&fast.queries, &full.queries);
            proptest::prop_assert_eq!(&fast.answers, &full.answers);
            proptest::prop_assert_eq!(&fast.authorities, &full.authorities);
            proptest::prop_assert!(fast.additionals.is_empty() && full.additionals.is_empty());
            proptest::prop_assert_eq!(&fast.edns, &full.edns);
            proptest::prop_assert_eq!(fast.edns.is_some(), edns.is_some());
        }
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
