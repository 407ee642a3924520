"""Stream parsers: each agent CLI's own output lines turned into the spec's progress events."""
