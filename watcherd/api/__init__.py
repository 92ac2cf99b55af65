"""Together's fine-tuning API, as watcherd uses it.

- `client`: the async client: typed results, retries, deadlines, the host gate;
- `shapes`: the validation of every response body into small typed records;
- `transport`: one HTTP exchange under an overall deadline and a body cap;
- `limits`: the host gate (Retry-After), in-flight and rate caps, full-jitter backoff;
- `latency`: the request-duration histogram.

Nothing here imports the store or the hooks; `watcherd.watch` composes them.
"""
