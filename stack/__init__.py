"""Operations: the `scalable-api` CLI, the `up` supervisor, rolling restarts, the local service launchers and
the bench harness. It sits above the processes (it starts them); no process package imports it."""
