package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

// runToken makes a new lookup API token: the token itself goes to --out (a
// file created with mode 0600) or, without --out, to stderr; the tokens-file
// entry (its hash and scopes, no secret) goes to stdout, so that
//
//	featurepipe token --consumer fraud-model --entities user --out fraud-model.token >> tokens.yaml
//
// issues a token in one step.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", "--consumer NAME --entities E1,E2 [--tags T1,T2] [--out FILE]", stderr)
	consumer := fs.String("consumer", "", "who uses the token: recorded as the consumer of its lookups")
	entities := fs.String("entities", "", `comma-separated entities the token may read ("*": every entity)`)
	tags := fs.String("tags", "", `comma-separated feature tags it may read ("*": every tag); untagged features need none`)
	out := fs.String("out", "", "file to write the token to (created, mode 0600; default: stderr)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "consumer", "entities"); err != nil {
		return err
	}
	token, hash, err := lookup.NewToken()
	if err != nil {
		return err
	}
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		_, werr := fmt.Fprintln(f, token)
		if err := f.Close(); werr == nil {
			werr = err
		}
		if werr != nil {
			return fmt.Errorf("token file %s: %w", *out, werr)
		}
	} else {
		fmt.Fprintf(stderr, "token for %s (shown once; give it to the consumer, keep only the hash below):\n%s\n", *consumer, token)
	}
	fmt.Fprintf(stdout, "  - consumer: %s\n    sha256: %s\n    entities: %s\n", strconv.Quote(*consumer), hash, yamlList(splitList(*entities)))
	if t := splitList(*tags); len(t) > 0 {
		fmt.Fprintf(stdout, "    tags: %s\n", yamlList(t))
	}
	return nil
}

// yamlList writes names as a YAML flow list of quoted strings.
func yamlList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// listenHTTP listens on addr; with a certificate and key (both or neither)
// it serves TLS (1.2 or later) with them. Both files are read now, so a bad
// certificate fails start-up, not the first request. A renewed certificate
// is picked up by a restart.
func listenHTTP(addr, certFile, keyFile string) (net.Listener, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	var tc *tls.Config
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate %s, key %s: %w", certFile, keyFile, err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}
