"""The node's pods: the assignment set applied (`manager`) and kept on disk
(`journal`), one worker per pod (`worker`) driving its containers by the pure
decisions of `lifecycle`, their status reports queued for the session
(`outbox`), a container found for its logs (`containers`), and what a container
is started with (`security_context`, `service_env`)."""
