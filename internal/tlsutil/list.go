package tlsutil

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// CertInfo describes one certificate file of a certs dir.
type CertInfo struct {
	File     string
	Name     string // Subject CN
	Role     string // "ca", "node", "client" or "none"
	NotAfter time.Time
	Hosts    []string // subject alternative names
}

// List describes the certificate files (*.crt) of dir, sorted by name.
func List(dir string) ([]CertInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []CertInfo
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		certs, err := readCerts(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			info := CertInfo{File: e.Name(), Name: c.Subject.CommonName, Role: "ca", NotAfter: c.NotAfter}
			if !c.IsCA {
				id, _ := IdentityOf(c)
				info.Role = id.Role.String()
			}
			info.Hosts = append(info.Hosts, c.DNSNames...)
			for _, ip := range c.IPAddresses {
				info.Hosts = append(info.Hosts, ip.String())
			}
			out = append(out, info)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}
