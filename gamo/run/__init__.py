"""The run machinery every script shares: settings, the output folder, the record,
checkpoints, stopping, reporting and the loop."""
