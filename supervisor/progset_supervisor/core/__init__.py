"""The supervisor core: programs, reload plans, the master that owns them, spawning, the config watcher."""
