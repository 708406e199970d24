package greylist

import "testing"

func TestNormalizeSender(t *testing.T) {
	tests := []struct{ in, want string }{
		// Case and the null sender.
		{"John.Smith@Example.COM", "john.smith@example.com"},
		{"", ""},
		{"<>", ""},
		// BATV.
		{"prvs=1234abcdef=user@example.com", "user@example.com"},
		{"PRVS=1234ABCDEF=User@Example.com", "user@example.com"},
		{"prvs=4068eb2540=simexpand@ldap.example.com", "simexpand@ldap.example.com"},
		{"prvs=user=1234abcdef@example.com", "user@example.com"},
		{"prvs=sometag=user@example.com", "user@example.com"},
		{"msprvs1=19260wV5hT3DE=bounces-1898-1322@sparkpostmail.example", "bounces-#@sparkpostmail.example"},
		{"btv1==760cdc7c545==Julian@heig-vd.example", "julian@heig-vd.example"},
		{"prvs==user@example.com", "prvs==user@example.com"},
		{"btv1==tag@example.com", "btv1==tag@example.com"},
		// SRS.
		{"SRS0=HHH=TT=example.com=user@forwarder.example", "user@example.com"},
		{"SRS0+xxxx=yy=example.com=alice@yourdomain.example", "alice@example.com"},
		{"srs0-abcd=ab=example.com=a=b@fwd.example", "a=b@example.com"},
		{"SRS1=HHH=fwd1.example==HHH=TT=example.com=user@fwd2.example", "user@example.com"},
		{"SRS1=HHH=fwd1.example=+HHH=TT=example.com=user@fwd2.example", "user@example.com"},
		{"SRS0=abcd=ab=example.com=prvs=1234abcdef=user@fwd.example", "user@example.com"},
		{"prvs=1234abcdef=SRS0=abcd=ab=example.com=user@fwd.example", "user@example.com"},
		{"srs0=bad@fwd.example", "srs0=bad@fwd.example"},
		{"srs0=h=toolong=example.com=u@fwd.example", "srs0=h=toolong=example.com=u@fwd.example"},
		{"srs1=h=fwd.example@fwd.example", "srs1=h=fwd.example@fwd.example"},
		// Sub-address tags.
		{"user+newsletter@example.com", "user@example.com"},
		{"user+tag+more@example.com", "user@example.com"},
		{"bounces+1234567-abcd-user=example.com@sendgrid.example", "bounces@sendgrid.example"},
		{"+tag@example.com", "+tag@example.com"},
		// VERP and other ids.
		{"bounces-123-456@example.com", "bounces-#@example.com"},
		{"bounce-1a2b3c4d@example.com", "bounce-#@example.com"},
		{"bounce-12345@example.com", "bounce-12345@example.com"},
		{"0100018f2a3b4c5d-1c2d3e4f-5a6b-7c8d-9e0f-1a2b3c4d5e6f-000000@amazonses.com", "#@amazonses.com"},
		{"bounce-mc.us5_123456789.1234567-user=example.com@mail123.mcsv.example", "bounce-mc.us5_#-user=example.com@mail123.mcsv.example"},
		{"id-123456-abc@example.com", "id-#@example.com"}, // hex tokens join the run
		{"msg123456abc@example.com", "msg123456abc@example.com"},
		{"123456-abcxyz@example.com", "#-abcxyz@example.com"},
		{"facade@example.com", "facade@example.com"},
		{"dead-beef-cafe-face@example.com", "dead-beef-cafe-face@example.com"},
		{"ed1977@example.com", "#@example.com"}, // hex-looking names too: they only share triplets within a domain
		{"mailer-daemon@example.com", "mailer-daemon@example.com"},
		{"user@123456.example.com", "user@123456.example.com"}, // only the local part
		// Malformed or unusual input is only lower-cased.
		{"Not An Address", "not an address"},
		{"@Example.com", "@example.com"},
		{"user+tag@", "user@"},
		{"\"John+Tag 123456\"@Example.com", "\"john+tag 123456\"@example.com"},
		{" user@example.com ", " user@example.com "},
		{"Jörg+x@Example.com", "jörg@example.com"},
	}
	for _, tt := range tests {
		got := NormalizeSender(tt.in)
		if got != tt.want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if again := NormalizeSender(got); again != got {
			t.Errorf("NormalizeSender(%q) = %q, not idempotent", got, again)
		}
	}
}
