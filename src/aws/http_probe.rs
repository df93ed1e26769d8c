//! The HTTP probe: `HttpProbe` over `reqwest`, the GET of the contract's `verify: http_output`
//! checks (on a clone, and after a swap). Not AWS: it asks the environment's own endpoint, so it has no SDK client, no SigV4 and no
//! IAM action. It sits with the AWS adapters only because `cloud_from` builds every real
//! adapter of `Cloud` in one place.

use std::time::Duration;

use async_trait::async_trait;

use crate::ports::*;

/// The client is built on the first GET: building it loads the system's root certificates
/// (a few milliseconds of CPU), which most commands (an `s3 sync`, a plan) never need.
pub struct Http {
    timeout: Duration,
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Http {
    /// Each GET gives up after `timeout` (then retried by the check's wait, as any error).
    pub(super) fn new(timeout: Duration) -> Http {
        Http {
            timeout,
            client: std::sync::OnceLock::new(),
        }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(self.timeout)
                .build()
                .expect("HTTP client builds")
        })
    }
}

#[async_trait]
impl HttpProbe for Http {
    async fn get_status(&self, url: &str) -> PortResult<u16> {
        let response = self
            .client()
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
