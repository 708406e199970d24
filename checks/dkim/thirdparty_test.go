package dkim

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
	"github.com/mxgate/mxgate/internal/testutil"
)

// The tests in this file verify messages signed by a signer that is not
// go-msgauth: dkimsign from Debian's python3-dkim (dkimpy). A verifier
// tested only against its own library's signer can share that signer's
// mistakes.

// signerKeys writes the test keys in the files dkimsign reads: PKCS#8 PEM
// for RSA, the base64 Ed25519 seed for Ed25519 (what dknewkey writes).
func signerKeys(t *testing.T) (rsaFile, edFile string) {
	t.Helper()
	rk, ek := testKeys()
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(rk)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile, edFile = filepath.Join(dir, "rsa.key"), filepath.Join(dir, "ed25519.key")
	if err := os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(ek.Seed())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return rsaFile, edFile
}

// dkimsign signs msg with python3-dkim's dkimsign; args are its options
// and positional arguments (selector domain keyfile).
func dkimsign(t *testing.T, msg []byte, args ...string) []byte {
	t.Helper()
	bin := testutil.Need(t, "dkimsign", "python3-dkim")
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimsign %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if !bytes.HasPrefix(out, []byte("DKIM-Signature:")) || bytes.Equal(out, msg) {
		t.Fatalf("dkimsign %s did not sign:\n%s\n%s", strings.Join(args, " "), out, stderr.String())
	}
	return out
}

func TestThirdPartySigner(t *testing.T) {
	rsaFile, edFile := signerKeys(t)
	runSignerCases(t, signed{
		rsa:     dkimsign(t, plain, "sel1", "example.test", rsaFile),
		ed:      dkimsign(t, plain, "--signalg", "ed25519-sha256", "ed1", "example.test", edFile),
		simple:  dkimsign(t, plain, "--hcanon", "simple", "--bcanon", "simple", "--identity", "alice@mail.example.test", "sel1", "example.test", rsaFile),
		relaxed: dkimsign(t, plain, "--hcanon", "relaxed", "--bcanon", "relaxed", "sel1", "example.test", rsaFile),
	})
}

// One good signature is enough (RFC 6376 §6.1: a verifier reports every
// signature, and any pass authenticates its d=), and a bad one does not
// put its domain in dkim.domains.
func TestThirdPartyOneGoodOneBad(t *testing.T) {
	rsaFile, edFile := signerKeys(t)
	rk, _ := testKeys()
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	msg := dkimsign(t, plain, "sel1", "good.example", rsaFile)
	msg = dkimsign(t, msg, "--signalg", "ed25519-sha256", "ed1", "bad.example", edFile)
	f := &resolvertest.Fake{TXT: map[string][]string{
		"sel1._domainkey.good.example": {keyRecord(t, rk)},
		"ed1._domainkey.bad.example":   {keyRecord(t, other)}, // not the key that signed
	}}
	r := run(t, f, msg, Options{})
	if r.Result != "pass" || r.Facts["dkim"] != "pass" {
		t.Fatalf("Result %q, dkim %v; want pass\n%s", r.Result, r.Facts["dkim"], r.Detail)
	}
	if got := domains(t, r); !slices.Equal(got, []string{"good.example"}) {
		t.Errorf("dkim.domains = %q, want [good.example]", got)
	}
	// dkimsign puts its signature on top: the ed25519 one comes first.
	want := "d=bad.example s=ed1 ed25519-sha256: fail (signature did not verify: dkim: invalid Ed25519 signature); d=good.example s=sel1 rsa-sha256: pass"
	if r.Detail != want {
		t.Errorf("Detail\n got %s\nwant %s", r.Detail, want)
	}
	if len(r.Auth) != 2 || generic(t, r, 0).Value != "fail" || generic(t, r, 1).Value != "pass" {
		t.Errorf("Auth = %v", r.Auth)
	}
}

// Keys made by the third party's own key tool, published as it writes
// them (the .dns file), verify too.
func TestThirdPartyKeyTool(t *testing.T) {
	dknewkey := testutil.Need(t, "dknewkey", "python3-dkim")
	dir := t.TempDir()
	for _, kt := range []string{"rsa", "ed25519"} {
		t.Run(kt, func(t *testing.T) {
			base := filepath.Join(dir, kt)
			cmd := exec.Command(dknewkey, "--ktype", kt, base)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("dknewkey: %v\n%s", err, out)
			}
			record, err := os.ReadFile(base + ".dns")
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"k1", "example.test", base + ".key"}
			if kt == "ed25519" {
				args = append([]string{"--signalg", "ed25519-sha256"}, args...)
			}
			msg := dkimsign(t, plain, args...)
			f := &resolvertest.Fake{TXT: map[string][]string{"k1._domainkey.example.test": {strings.TrimSpace(string(record))}}}
			if r := run(t, f, msg, Options{}); r.Result != "pass" {
				t.Fatalf("Result %q: %s (record %q)", r.Result, r.Detail, record)
			}
		})
	}
}
