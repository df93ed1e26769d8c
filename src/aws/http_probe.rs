//! The HTTP probe: `HttpProbe` over `reqwest`, the GET of the contract's `verify: http_output`
//! checks (on a clone, and after a swap). Not AWS: it asks the environment's own endpoint, so it has no SDK client, no SigV4 and no
//! IAM action. It sits with the AWS adapters only because `cloud_from` builds every real
//! adapter of `Cloud` in one place.

use std::time::Duration;

use async_trait::async_trait;

use crate::ports::*;

pub struct Http(reqwest::Client);

impl Http {
    /// Each GET gives up after `timeout` (then retried by the check's wait, as any error).
    pub(super) fn new(timeout: Duration) -> Http {
        Http(
            reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("HTTP client builds"),
        )
    }
}

#[async_trait]
impl HttpProbe for Http {
    async fn get_status(&self, url: &str) -> PortResult<u16> {
        let response = self
            .0
            .get(url)
            .send()
            .await
            .map_err(|e| PortError::Transient {
                operation: "http:GET".into(),
                message: format!("{url}: {e}"),
            })?;
        Ok(response.status().as_u16())
    }
}
