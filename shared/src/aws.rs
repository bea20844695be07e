//! One way to configure an AWS SDK client (DynamoDB, SQS, SNS): rustls with ring (one TLS stack in every
//! binary), fail-fast timeouts (a function has seconds, not minutes: the caller's budget decides), and for a
//! local stand-in endpoint (DynamoDB Local, moto) test credentials, so running the tests needs no AWS setup.

use std::time::Duration;

/// The HTTPS client every SDK client shares the code of.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// The SDK configuration for `region` (else `AWS_REGION`, else us-east-1) and an optional local `endpoint`, with
/// each attempt bounded by `attempt` and the whole operation (retries included) by `operation`.
pub async fn sdk_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    attempt: Duration,
    operation: Duration,
) -> aws_config::SdkConfig {
    let region = region.map(str::to_owned).or_else(|| std::env::var("AWS_REGION").ok());
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.unwrap_or_else(|| "us-east-1".to_owned())))
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
        .http_client(http_client());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        // Local stand-ins accept any credentials.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_credential_types::Credentials::from_keys("test", "test", None));
        }
    }
    loader.load().await
}
