#!/bin/sh
# Makes a throwaway PKI for the control-plane tests and the demo with the openssl CLI, into DIR:
#   ca.pem ca.key                 the test CA (clients and server chain to it)
#   server.pem server.key         CN=localhost, SAN DNS:localhost, IP:127.0.0.1
#   provisioner.pem/.key          CN=test-provisioner
#   auditor.pem/.key              CN=test-auditor
#   operator.pem/.key             CN=test-operator
#   rogue-ca.pem, rogue.pem/.key  CN=test-provisioner issued by another CA (must be refused)
#   roles                         the --roles file mapping the three CNs
# EC P-256 keys, valid for 2 days. Usage: make_test_pki.sh DIR
set -eu
dir=${1:?usage: make_test_pki.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# ca NAME CN
ca() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -sha256 -days 2 -subj "/CN=$2/O=Tapwire Test" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem" 2>/dev/null
}

# leaf NAME CN CA EXTFILE-CONTENT
leaf() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2/O=Tapwire Test" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$4" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -sha256 \
        -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'
server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1'

ca ca "Tapwire Test CA"
ca rogue-ca "Rogue CA"
leaf server localhost ca "$server_ext"
leaf provisioner test-provisioner ca "$client_ext"
leaf auditor test-auditor ca "$client_ext"
leaf operator test-operator ca "$client_ext"
leaf rogue test-provisioner rogue-ca "$client_ext"

cat > roles <<'ROLES'
# client certificate common name -> role
test-provisioner provisioner
test-auditor auditor
test-operator operator
ROLES
chmod 600 ./*.key
