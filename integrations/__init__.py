"""Platform bots on the avatar server (docs/INTEGRATION.md): base.AvatarIntegration, and terminal_bot as the
example that runs here."""
