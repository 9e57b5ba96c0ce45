"""The node's ingress proxy: HTTP and HTTPS on ports 80/443 of the proxy
addresses, routing by host and path to Services' ready endpoints."""
