"""The node itself towards the control plane: its credentials (join and
renew), the mutual-TLS session, the node status it heartbeats, the pod status
reports it streams and the resource metrics it samples."""
