//! The object-store servers start, answer, and take a bucket or a container each; the shared
//! ones are stopped by their watchdogs after this process exits.

use std::net::TcpStream;

use berth_testkit::azurite::TestAzurite;
use berth_testkit::s3::TestS3;

fn port_of(endpoint: &str) -> u16 {
    let rest = endpoint.trim_start_matches("http://127.0.0.1:");
    rest.split('/').next().unwrap().parse().unwrap()
}

#[test]
fn shared_object_stores_start_once_and_answer() {
    let s3 = TestS3::shared();
    assert!(std::ptr::eq(s3, TestS3::shared()), "one per process");
    TcpStream::connect(("127.0.0.1", port_of(&s3.endpoint()))).unwrap();
    assert_ne!(s3.bucket(), s3.bucket(), "a new bucket each time");
    assert!(s3.url().starts_with("s3://bucket-"));

    let azurite = TestAzurite::shared();
    TcpStream::connect(("127.0.0.1", port_of(&azurite.endpoint()))).unwrap();
    assert_ne!(azurite.container(), azurite.container());
    assert!(azurite.url().starts_with("azblob://container-"));
}
