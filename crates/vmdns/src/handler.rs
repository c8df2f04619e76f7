//! Answering one query: the pure lookup ([`answer`]) and the hickory
//! `RequestHandler` that wraps it.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, PTR, SOA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

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

/// The hickory handler over a [`Zone`].
pub(crate) struct ZoneHandler {
    zone: Arc<Zone>,
    pub(crate) soa: Record,
}

impl ZoneHandler {
    pub(crate) fn new(zone: Arc<Zone>) -> Self {
        Self {
            zone,
            soa: soa_record(),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut resp_edns = None;
        if let Some(req) = request.edns.as_ref() {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            resp_edns = Some(e);
        }
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = resp_edns.as_ref() {
            builder.edns(e);
        }
        let mut meta = Metadata::response_from_request(&request.metadata);
        let queries = request.queries.queries();
        let bad = request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query;
        let query = match queries {
            [q] if !bad => q,
            _ => {
                meta.response_code = if bad {
                    ResponseCode::NotImp
                } else {
                    ResponseCode::FormErr
                };
                return send(response_handle, builder.build_no_records(meta)).await;
            }
        };
        if query.query_class() != DNSClass::IN {
            meta.response_code = ResponseCode::Refused;
            return send(response_handle, builder.build_no_records(meta)).await;
        }
        let qname: &LowerName = query.name();
        let owner: Name = qname.into();
        let result = answer(&self.zone, &owner.to_ascii(), query.query_type());
        let mut answers = Vec::new();
        let mut authority = Vec::new();
        meta.authoritative = true;
        meta.recursion_available = false;
        match result {
            Answer::A(ip) => answers.push(Record::from_rdata(owner, TTL, RData::A(A(ip)))),
            Answer::Ptr(name) => match Name::from_ascii(format!("{name}.vm.")) {
                Ok(target) => answers.push(Record::from_rdata(owner, TTL, RData::PTR(PTR(target)))),
                Err(_) => meta.response_code = ResponseCode::ServFail,
            },
            Answer::NoData => authority.push(self.soa.clone()),
            Answer::NxDomain => {
                meta.response_code = ResponseCode::NXDomain;
                authority.push(self.soa.clone());
            }
            Answer::Refused => {
                meta.authoritative = false;
                meta.response_code = ResponseCode::Refused;
            }
        }
        let response = builder.build(meta, answers.iter(), authority.iter(), None, None);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot send DNS response");
                let mut m = Metadata::response_from_request(&request.metadata);
                m.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_server::proto::op::Header {
                    metadata: m,
                    counts: Default::default(),
                })
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    mut handle: R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let meta = *response.metadata();
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "cannot send DNS response");
            ResponseInfo::from(hickory_server::proto::op::Header {
                metadata: meta,
                counts: Default::default(),
            })
        }
    }
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
