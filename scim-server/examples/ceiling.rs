//! The HTTP ceiling of this machine for `scripts/bench.sh ceiling`: actix-web on one worker
//! answering `GET /scim/v2/Users/{id}` with a fixed 1 KB SCIM User, with nothing behind it (no
//! authentication, no database, no JSON writing). What scimhub's own get-by-id reaches is
//! reported as a share of this, measured the same way in the same run.
//!
//!     ceiling 127.0.0.1:PORT

#![allow(clippy::print_stdout)]

use actix_web::{web, App, HttpResponse, HttpServer};

/// A SCIM User of about 1 KB, as scimhub returns one (core, enterprise extension, meta).
const USER: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"id":"0190c5a4-7a53-7d1e-9a5e-3b2f6f0e8a11","externalId":"E000123","userName":"bjensen@example.com","name":{"formatted":"Ms. Barbara J Jensen III","familyName":"Jensen","givenName":"Barbara","middleName":"Jane","honorificPrefix":"Ms.","honorificSuffix":"III"},"displayName":"Babs Jensen","nickName":"Babs","title":"Tour Guide","userType":"Employee","preferredLanguage":"en-US","locale":"en-US","timezone":"America/Los_Angeles","active":true,"emails":[{"value":"bjensen@example.com","type":"work","primary":true}],"phoneNumbers":[{"value":"+1 555 555 5555","type":"work"}],"addresses":[{"streetAddress":"100 Universal City Plaza","locality":"Hollywood","region":"CA","postalCode":"91608","country":"US","type":"work","primary":true}],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","costCenter":"4130","organization":"Universal Studios","division":"Theme Park","department":"Tour Operations"},"meta":{"resourceType":"User","created":"2026-12-01T09:00:00Z","lastModified":"2026-12-01T09:00:00Z","version":"W/\"3694e05e9dff591\"","location":"http://127.0.0.1/scim/v2/Users/0190c5a4-7a53-7d1e-9a5e-3b2f6f0e8a11"}}"#;

async fn user() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/scim+json")
        .body(USER)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let server = HttpServer::new(|| App::new().route("/scim/v2/Users/{id}", web::get().to(user)))
        .workers(1)
        .bind(&bind)?;
    for addr in server.addrs() {
        println!("listening on {addr}");
    }
    server.run().await
}
