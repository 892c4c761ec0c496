//! The one thing logmill reads from an X.509 certificate itself: the subject's common name
//! (CN), which names a mutual-TLS client's app (`server::tls`, README "TLS"). rustls has
//! already verified the certificate (chain, dates, usage) before this runs; this only walks
//! the DER to the subject.
//!
//! Pure and bounded: it takes `&[u8]`, checks every length against what is left before using
//! it, allocates nothing but the answer, and returns `None` for anything it does not expect
//! (a CN that is not a UTF-8, printable or IA5 string, or a certificate with no CN).

/// The subject's first common name, if the certificate has one as a string.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    // version [0] EXPLICIT, optional.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped; then the subject.
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (mut subject, _) = expect(tbs, SEQUENCE)?;
    while !subject.is_empty() {
        let (mut rdn, rest) = expect(subject, SET)?;
        subject = rest;
        while !rdn.is_empty() {
            let (attribute, rest) = expect(rdn, SEQUENCE)?;
            rdn = rest;
            let (oid, value) = expect(attribute, OID)?;
            if oid != COMMON_NAME {
                continue;
            }
            let (tag, text, _) = tlv(value)?;
            return match tag {
                UTF8_STRING | PRINTABLE_STRING | IA5_STRING => {
                    std::str::from_utf8(text).ok().map(str::to_owned)
                }
                _ => None,
            };
        }
    }
    None
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
/// 2.5.4.3, id-at-commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element of tag `want`: its content and what follows it.
fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = tlv(input)?;
    (tag == want).then_some((content, rest))
}

/// One DER element: tag, content, rest. Lengths of up to four bytes; each checked against the
/// input before it is used.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let len = input[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        input = &input[n..];
        len
    };
    if input.len() < len {
        return None;
    }
    let (content, rest) = input.split_at(len);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_cn(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "logmill tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_common_name() {
        assert_eq!(
            subject_common_name(&cert_with_cn("billing")).as_deref(),
            Some("billing")
        );
    }

    #[test]
    fn no_common_name_is_none() {
        let mut params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(subject_common_name(&der), None);
    }

    #[test]
    fn every_truncation_is_none_or_the_name_never_a_panic() {
        let der = cert_with_cn("billing");
        for cut in 0..der.len() {
            let name = subject_common_name(&der[..cut]);
            assert!(name.is_none() || name.as_deref() == Some("billing"));
        }
        assert_eq!(
            subject_common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(subject_common_name(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }
}
