"""The node's ingress proxy: a managed Caddy on ports 80/443 of the proxy addresses,
routing by host and path to Services' ready endpoints (HTTP/1.1, HTTP/2 over TLS)."""
