"""The node's pods: the assignment set kept (`manager`), one worker per pod
(`worker`) driving its containers by the pure decisions of `lifecycle`, and
what a container is started with (`security_context`, `service_env`)."""
