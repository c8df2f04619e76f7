//! Answering one query: the pure lookup ([`answer`]) and the zone's SOA.

use std::net::Ipv4Addr;
use std::str::FromStr;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::zone::{TTL, Zone};

/// What a query gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An `A` record.
    A(Ipv4Addr),
    /// A `PTR` record to `<name>.vm.`.
    Ptr(String),
    /// The name exists (or is the zone apex) but has no record of this type.
    NoData,
    /// The name does not exist in a zone we own.
    NxDomain,
    /// Not ours.
    Refused,
}

/// The answer to `qname` (any case, with or without the final dot) of type
/// `qtype` from `zone`.
pub fn answer(zone: &Zone, qname: &str, qtype: RecordType) -> Answer {
    let lower = qname.trim_end_matches('.').to_ascii_lowercase();
    if lower == "vm" {
        return Answer::NoData;
    }
    if let Some(label) = lower.strip_suffix(".vm") {
        if label.contains('.') {
            return Answer::NxDomain;
        }
        return match zone.addr_of(label) {
            Some(ip) if matches!(qtype, RecordType::A | RecordType::ANY) => Answer::A(ip),
            Some(_) => Answer::NoData,
            None => Answer::NxDomain,
        };
    }
    if let Some(rev) = lower.strip_suffix(".in-addr.arpa") {
        let octets: Vec<&str> = rev.split('.').collect();
        if octets.len() != 4 {
            return Answer::Refused;
        }
        let Ok(ip) = Ipv4Addr::from_str(&format!(
            "{}.{}.{}.{}",
            octets[3], octets[2], octets[1], octets[0]
        )) else {
            return Answer::Refused;
        };
        if !zone.in_subnet(ip) {
            return Answer::Refused;
        }
        return match zone.name_of(ip) {
            Some(name) if matches!(qtype, RecordType::PTR | RecordType::ANY) => Answer::Ptr(name),
            Some(_) => Answer::NoData,
            None => Answer::NxDomain,
        };
    }
    Answer::Refused
}

/// The zone's SOA record (also the negative-answer TTL).
pub(crate) fn soa_record() -> Record {
    Record::from_rdata(
        Name::from_ascii("vm.").expect("static name"),
        TTL,
        RData::SOA(SOA::new(
            Name::from_ascii("ns.vm.").expect("static name"),
            Name::from_ascii("hostmaster.vm.").expect("static name"),
            1,
            60,
            60,
            600,
            TTL,
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let z = Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24));
        let ip = Ipv4Addr::new(172, 30, 0, 5);
        z.publish("dev", ip);
        assert_eq!(answer(&z, "dev.vm.", RecordType::A), Answer::A(ip));
        assert_eq!(answer(&z, "DEV.VM", RecordType::A), Answer::A(ip));
        assert_eq!(answer(&z, "dev.vm.", RecordType::AAAA), Answer::NoData);
        assert_eq!(answer(&z, "nope.vm.", RecordType::A), Answer::NxDomain);
        assert_eq!(answer(&z, "a.dev.vm.", RecordType::A), Answer::NxDomain);
        assert_eq!(answer(&z, "vm.", RecordType::SOA), Answer::NoData);
        assert_eq!(answer(&z, "example.com.", RecordType::A), Answer::Refused);
        assert_eq!(
            answer(&z, "5.0.30.172.in-addr.arpa.", RecordType::PTR),
            Answer::Ptr("dev".into())
        );
        assert_eq!(
            answer(&z, "6.0.30.172.in-addr.arpa.", RecordType::PTR),
            Answer::NxDomain
        );
        assert_eq!(
            answer(&z, "8.8.8.8.in-addr.arpa.", RecordType::PTR),
            Answer::Refused
        );
        assert_eq!(
            answer(&z, "x.0.30.172.in-addr.arpa.", RecordType::PTR),
            Answer::Refused
        );
    }
}
