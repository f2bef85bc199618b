"""How clients connect: the wire protocol, the HTTP API, the pages and the data-channel transports."""
