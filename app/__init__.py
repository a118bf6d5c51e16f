"""FedXray desktop application: workstation UI, core services and the `fedxray` command."""
