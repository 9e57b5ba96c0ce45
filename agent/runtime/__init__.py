"""Container runtimes behind one `ContainerRuntime` protocol (see `base`)."""
