package greystore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/greystore"
	"github.com/mxgate/mxgate/internal/greystore/greystoretest"
	"github.com/mxgate/mxgate/internal/testutil"
	"github.com/redis/go-redis/v9"
)

func TestOpen(t *testing.T) {
	greystoretest.CheckGoroutines(t)
	dataDir := t.TempDir()
	abs := filepath.Join(t.TempDir(), "abs.db")
	refused := fmt.Sprintf("redis://:hunter2@127.0.0.1:%d/0", testutil.FreePort(t))
	tests := []struct {
		name, spec, dataDir string
		wantType            string // "": an error is expected
		wantFile            string // for bbolt
		wantErr             []string
	}{
		{name: "memory", spec: "memory", wantType: "*greystore.Memory"},
		{name: "bbolt relative", spec: "bbolt:grey.db", dataDir: dataDir, wantType: "*greystore.Bolt", wantFile: filepath.Join(dataDir, "grey.db")},
		{name: "bbolt absolute", spec: "bbolt:" + abs, dataDir: dataDir, wantType: "*greystore.Bolt", wantFile: abs},
		{name: "bbolt no path", spec: "bbolt:", dataDir: dataDir, wantErr: []string{"names no file", `"memory", "bbolt:PATH" or "redis://`}},
		{name: "bbolt relative without data dir", spec: "bbolt:grey.db", wantErr: []string{"relative", "no data directory"}},
		{name: "bbolt missing dir", spec: "bbolt:sub/grey.db", dataDir: dataDir, wantErr: []string{"does not exist"}},
		{name: "redis unreachable", spec: refused, wantErr: []string{"refused", ":xxxxx@"}},
		{name: "unknown", spec: "mysql://root:hunter2@db/grey", wantErr: []string{"unknown store", `"memory", "bbolt:PATH" or "redis://`, "xxxxx"}},
		{name: "empty", spec: "", wantErr: []string{"unknown store"}},
		{name: "case matters", spec: "Memory", wantErr: []string{"unknown store"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := greystore.Open(tt.spec, tt.dataDir)
			if tt.wantType == "" {
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded, want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q should contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := fmt.Sprintf("%T", s); got != tt.wantType {
				t.Errorf("Open returned a %s, want %s", got, tt.wantType)
			}
			err = s.Update(context.Background(), "k", func([]byte) ([]byte, time.Duration, error) { return []byte("v"), time.Hour, nil })
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantFile != "" {
				if _, err := os.Stat(tt.wantFile); err != nil {
					t.Errorf("bbolt file: %v", err)
				}
			}
		})
	}
}

func TestOpenRedis(t *testing.T) {
	srv := testutil.StartRedis(t)
	s, err := greystore.Open(srv.URL("", 3), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*greystore.Redis); !ok {
		t.Fatalf("Open returned a %T, want *greystore.Redis", s)
	}
	if err := s.Update(context.Background(), "k", incr); err != nil {
		t.Fatal(err)
	}
	// In database 3, as the URL said, under the default prefix.
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 3, Protocol: 2})
	defer raw.Close()
	if v, err := raw.Get(context.Background(), "mxgate:gl:k").Result(); err != nil || v != "1" {
		t.Errorf("GET mxgate:gl:k in database 3 = %q, %v; want 1", v, err)
	}
}

func BenchmarkUpdate(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) greystore.Store
	}{
		{"memory", func(b *testing.B) greystore.Store { return greystore.NewMemory(0) }},
		{"bbolt", func(b *testing.B) greystore.Store {
			s, err := greystore.OpenBolt(filepath.Join(b.TempDir(), "grey.db"), greystore.BoltOptions{GCInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		// Keys cycle through a set the size of a busy day's triplets, so
		// updates replace as well as create.
		const keys = 10_000
		names := make([]string, keys)
		for i := range names {
			names[i] = fmt.Sprintf("198.51.100.%d|sender%d@example.org|rcpt@example.net", i%256, i)
		}
		f := func(old []byte) ([]byte, time.Duration, error) {
			return append(old[:0:0], "first=1700000000 passes=1"...), 36 * time.Hour, nil
		}
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			defer s.Close()
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := s.Update(ctx, names[i%keys], f); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(st.name+"/parallel", func(b *testing.B) {
			s := st.open(b)
			defer s.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if err := s.Update(ctx, names[i%keys], f); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}
