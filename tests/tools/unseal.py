#!/usr/bin/env python3
"""Independent unsealer for Bitnami sealed-secrets values, used to cross-check billing::seal.

Written from the controller's format, not from the Rust code:
  base64( u16 BE len(rsa_ct) || rsa_ct || AES-256-GCM(ciphertext || 16-byte tag) )
where rsa_ct = RSA-OAEP(SHA-256, MGF1-SHA-256, label=b"<namespace>/<name>") of the 32-byte
AES key and the GCM nonce is 12 zero bytes with no associated data.

Usage: unseal.py <private-key.pem> <cases.json> [<cert.pem>]
cases.json: [{"namespace", "name", "sealed", "expected_b64"}, ...]
Exits non-zero with a message on the first mismatch.
"""
import base64
import json
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def unseal(private_key, namespace, name, sealed_b64):
    data = base64.b64decode(sealed_b64, validate=True)
    if len(data) < 2:
        raise ValueError("too short")
    (rsa_len,) = struct.unpack(">H", data[:2])
    rsa_ct, aes_ct = data[2 : 2 + rsa_len], data[2 + rsa_len :]
    if len(rsa_ct) != rsa_len:
        raise ValueError("too short for the RSA part")
    session_key = private_key.decrypt(
        rsa_ct,
        padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()),
            algorithm=hashes.SHA256(),
            label=f"{namespace}/{name}".encode(),
        ),
    )
    if len(session_key) != 32:
        raise ValueError(f"session key is {len(session_key)} bytes")
    return AESGCM(session_key).decrypt(b"\x00" * 12, aes_ct, None), rsa_len


def fail(msg):
    print(f"unseal.py: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) not in (3, 4):
        fail(__doc__)
    with open(sys.argv[1], "rb") as f:
        private_key = serialization.load_pem_private_key(f.read(), password=None)
    modulus_bytes = (private_key.key_size + 7) // 8
    with open(sys.argv[2], encoding="utf-8") as f:
        cases = json.load(f)
    if not cases:
        fail("no cases")

    if len(sys.argv) == 4:
        from cryptography import x509

        with open(sys.argv[3], "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        if cert.public_key().public_numbers() != private_key.public_key().public_numbers():
            fail("certificate does not hold the private key's public key")
        cns = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        print(f"unseal.py: certificate CN={cns} bits={private_key.key_size}")

    for i, case in enumerate(cases):
        ns, name = case["namespace"], case["name"]
        expected = base64.b64decode(case["expected_b64"])
        try:
            got, rsa_len = unseal(private_key, ns, name, case["sealed"])
        except (ValueError, InvalidTag) as e:
            fail(f"case {i} ({ns}/{name}): {type(e).__name__}: {e}")
        if rsa_len != modulus_bytes:
            fail(f"case {i}: length prefix {rsa_len} != modulus size {modulus_bytes}")
        if got != expected:
            fail(f"case {i} ({ns}/{name}): plaintext mismatch ({len(got)} vs {len(expected)} bytes)")
        # Strict scope: the same value must not open under another namespace or name.
        for other_ns, other_name in ((ns + "-other", name), (ns, name + "-other")):
            try:
                unseal(private_key, other_ns, other_name, case["sealed"])
            except (ValueError, InvalidTag):
                pass
            else:
                fail(f"case {i}: opened under {other_ns}/{other_name}")
        print(f"unseal.py: ok case {i} {ns}/{name} ({len(got)} bytes)")
    print(f"unseal.py: all {len(cases)} cases ok")


if __name__ == "__main__":
    main()
