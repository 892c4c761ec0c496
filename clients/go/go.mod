module logmill.dev/client

go 1.19
